//! The life of a function binary: logging, configuration and state once, then the loop
//! that takes invocations — Lambda's Runtime API, or local HTTP (an SCF web function).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;

use super::{handle_lambda_event, serve};
use crate::config::Config;
use crate::deadline;
use crate::handlers::Routes;
use crate::invocation::Invocation;
use crate::state::App;

/// The whole life of a function binary: read the configuration, build the state once,
/// then serve Lambda (when `AWS_LAMBDA_RUNTIME_API` is set) or local HTTP on `HOST:PORT`.
/// `BINARY migrate` instead brings the schema up to date (see [`super::migrate`]).
pub fn run(routes: &'static Routes) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let migrate = args.first().is_some_and(|a| a == "migrate");
    if migrate && std::env::var_os("RUST_LOG").is_none() {
        // The command prints what it did; the log adds only warnings (a lock waited for).
        std::env::set_var("RUST_LOG", "warn");
    }
    if let Err(e) = crate::logging::init() {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    // The secret store (WXPAY_SECRET_ID) is read here, once: the instance keeps the result.
    let settings = match crate::secrets::settings_from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if migrate {
        return super::migrate::command(&args[1..], &settings);
    }
    match crate::metric::enabled(&settings).and_then(|on| match on {
        true => crate::metric::install(),
        false => Ok(()),
    }) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_vars(settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let app = match App::new(config, routes) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("cannot open the store: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        run_lambda(app)
    } else {
        run_local(app)
    }
}

fn run_lambda(app: Arc<App>) -> ExitCode {
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
    let result = rt.block_on(lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| {
            let app = app.clone();
            async move {
                let deadline = lambda_deadline(event.context.deadline);
                let work = deadline::scope(deadline, handle_lambda_event(&app, event.payload));
                let answer = Invocation::start(&event.context.request_id).run(work).await;
                Ok::<Value, lambda_runtime::Error>(answer)
            }
        },
    )));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Lambda runtime failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Lambda's deadline (`Lambda-Runtime-Deadline-Ms`, Unix milliseconds) on this clock.
fn lambda_deadline(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    tokio::time::Instant::now()
        + std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

fn run_local(app: Arc<App>) -> ExitCode {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "9000".into());
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("HOST/PORT do not form an address: {host}:{port}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
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
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let types: Vec<&str> = app.routes.types().collect();
        tracing::info!(
            "serving {} on http://{addr} (POST /pay, GET /healthz)",
            types.join(", ")
        );
        serve(app, listener).await;
        ExitCode::SUCCESS
    })
}
