//! `wxpay_query`: serves its types in every invocation shape.

fn main() -> std::process::ExitCode {
    wxpay_shared::runtime::run(wxpay_shared::handlers::QUERY_TYPES)
}
