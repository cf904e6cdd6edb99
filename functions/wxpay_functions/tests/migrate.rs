//! Migrations are a deployment step: the built router, serving local HTTP (as an SCF web
//! function does) without `MIGRATE_ON_START`, runs no DDL and refuses a database whose
//! schema is behind with 503 `50020`, naming `wxpay_functions migrate`; that command brings
//! the schema up, says what it did, is safe to run again and from two places at once; and
//! the warm function then serves.

mod support;

use serde_json::json;
use support::{migrate, text, Scratch, Server, TestDb};
use wxpay_local::{LocalEnv, LocalOptions};
use wxpay_shared::store::SCHEMA_VERSION;

const ORDER: &str = r#"{"type":"wxpay_order","packageType":"basic","tradeType":"NATIVE"}"#;

/// The product's variables for `database_url`, as an operator would deploy them: without
/// `MIGRATE_ON_START`.
fn deployed(env: &LocalEnv, database_url: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = env
        .vars
        .iter()
        .filter(|(k, _)| k != "DATABASE_URL" && k != "MIGRATE_ON_START")
        .cloned()
        .collect();
    vars.push(("DATABASE_URL".into(), database_url.into()));
    vars
}

async fn the_function_refuses_until_migrate_runs(database_url: &str, scratch: &Scratch) {
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let server = Server::start(&deployed(&env, database_url), &scratch.0).await;

    let (status, body) = server.call(&[], serde_json::from_str(ORDER).unwrap()).await;
    assert_eq!((status, &body["code"]), (503, &json!(50020)), "{body}");
    let msg = body["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("wxpay_functions migrate"), "{msg}");
    assert!(!msg.contains(database_url), "no URL in an answer: {msg}");
    assert!(
        server.logs().contains("wxpay_functions migrate"),
        "the log says it too:\n{}",
        server.logs()
    );

    let check = migrate(Some(database_url), &["--check"]);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert!(
        text(&check.stdout).contains("no schema version"),
        "{check:?}"
    );

    let first = migrate(Some(database_url), &[]);
    assert!(first.status.success(), "{first:?}");
    let said = text(&first.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines.len(),
        SCHEMA_VERSION as usize,
        "one line per migration applied: {said}"
    );
    assert!(
        lines[0].starts_with("applied migration 1 (baseline"),
        "{said}"
    );
    assert!(
        lines[1].starts_with("applied migration 2 (orders.refund_reserved"),
        "{said}"
    );
    assert!(
        said.contains(" (reconciliation_progress: "),
        "the reconciliation checkpoints: {said}"
    );

    let again = migrate(Some(database_url), &[]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        text(&again.stdout).trim(),
        format!("schema is at version {SCHEMA_VERSION}, nothing to do")
    );
    let check = migrate(Some(database_url), &["--check"]);
    assert!(check.status.success(), "{check:?}");

    // The same warm instance serves now: it checks the schema again on each call until
    // it may serve.
    let (status, body) = server.call(&[], serde_json::from_str(ORDER).unwrap()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_function_refuses_until_migrate_runs() {
    let scratch = Scratch::new("migrate");
    let url = scratch.sqlite_url("wxpay.db");
    the_function_refuses_until_migrate_runs(&url, &scratch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mysql_the_function_runs_no_ddl_and_refuses_until_migrate_runs() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let scratch = Scratch::new("migrate-mysql");
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    {
        let server = Server::start(&deployed(&env, &db.url), &scratch.0).await;
        let (status, _) = server.call(&[], serde_json::from_str(ORDER).unwrap()).await;
        assert_eq!(status, 503);
    }
    use mysql_async::prelude::Queryable;
    let mut conn = db.conn().await;
    let tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    assert!(tables.is_empty(), "a cold start ran DDL: {tables:?}");
    let _ = conn.disconnect().await;
    the_function_refuses_until_migrate_runs(&db.url, &scratch).await;
}

/// Two deploy steps that both run migrate: both succeed, each migration is applied once.
async fn two_migrators_at_once(database_url: &str) {
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let url = database_url.to_string();
            std::thread::spawn(move || migrate(Some(&url), &[]))
        })
        .collect();
    let mut said = String::new();
    for run in runs {
        let out = run.join().expect("thread");
        assert!(out.status.success(), "{out:?}");
        said.push_str(&text(&out.stdout));
    }
    for version in 1..=SCHEMA_VERSION {
        assert_eq!(
            said.matches(&format!("applied migration {version} "))
                .count(),
            1,
            "{said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_commands_at_once_apply_each_migration_once() {
    let scratch = Scratch::new("migrate-twice");
    two_migrators_at_once(&scratch.sqlite_url("wxpay.db")).await;
    if let Some(db) = TestDb::create().await {
        two_migrators_at_once(&db.url).await;
    }
}

#[test]
fn migrate_says_what_is_missing_and_never_the_password() {
    let out = migrate(None, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("DATABASE_URL"), "{out:?}");

    let out = migrate(Some("mysql://root:s3cr3t-pw@127.0.0.1:1/x"), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("migration failed"), "{said}");
    assert!(!said.contains("s3cr3t-pw"), "{said}");

    let out = migrate(Some("sqlite:///nonexistent-dir/x.db"), &["--now"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("usage"), "{out:?}");
}
