//! `wxpay_functions`: serves every type (the router) in every invocation shape.

fn main() -> std::process::ExitCode {
    wxpay_shared::runtime::run(wxpay_shared::handlers::ALL_TYPES)
}
