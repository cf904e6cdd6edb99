//! `wxpay_functions migrate`: the explicit deployment step that brings `DATABASE_URL`'s
//! schema to this release's version (every function binary answers it; the router is the
//! one the documents name). It needs only `DATABASE_URL` (with `DATABASE_PASSWORD` if the
//! URL has none, and `DATABASE_CA_PEM` / `DATABASE_CA_PEM_FILE` for a verified TLS
//! connection), so an operator's machine or a deploy pipeline can run it without the
//! merchant's keys.
//!
//! `migrate` applies what is missing and prints one line per migration applied, or `schema
//! is at version N, nothing to do`; `migrate --check` only reports, and fails when the
//! schema is behind. Both exit 0 when the schema is one this release serves, 1 when not or
//! on a database error, 2 when `DATABASE_URL` is missing or malformed.

use std::process::ExitCode;

use crate::store::{self, DatabaseCa, OnStart, SCHEMA_VERSION};

const USAGE: &str = "usage: wxpay_functions migrate [--check]\n  \
    migrate          apply the schema migrations DATABASE_URL lacks\n  \
    migrate --check  report its schema version; exit 1 unless this release can serve it";

/// Runs `migrate` with `args` (what follows it on the command line).
pub fn command(args: &[String], settings: &[(String, String)]) -> ExitCode {
    let check_only = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The settings as the functions read them: the environment, a secret named by
    // WXPAY_SECRET_ID, DATABASE_PASSWORD joined into the URL.
    let setting = |name: &str| {
        settings
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.clone())
    };
    let url = match setting("DATABASE_URL") {
        Some(url) => url,
        None => {
            eprintln!(
                "DATABASE_URL is not set: migrate needs the database to migrate (mysql://user:pass@host:3306/db or sqlite://PATH)"
            );
            return ExitCode::from(2);
        }
    };
    // A managed MySQL that requires TLS needs its CA here as much as in the functions.
    let ca = match DatabaseCa::from_settings(
        setting("DATABASE_CA_PEM"),
        setting("DATABASE_CA_PEM_FILE"),
    ) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let store = match store::open_with(&url, ca.as_ref(), OnStart::Check) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot open the database: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        if check_only {
            return check(store.as_ref()).await;
        }
        match store.migrate().await {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("migration failed: {e}");
                // Each migration is recorded when it is done: say how far this run got.
                if let Ok(state) = store.schema_version().await {
                    if let Some(v) = state.version {
                        eprintln!("the schema is at version {v}; run migrate again once the cause is fixed (it goes on from there)");
                    }
                }
                ExitCode::FAILURE
            }
        }
    })
}

async fn check(store: &dyn store::Store) -> ExitCode {
    let state = match store.schema_version().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot read the schema version: {e}");
            return ExitCode::FAILURE;
        }
    };
    match store::require_compatible(state) {
        Ok(()) => {
            let v = state.version.unwrap_or_default();
            println!("schema is at version {v}; this release needs {SCHEMA_VERSION}: ready");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}
