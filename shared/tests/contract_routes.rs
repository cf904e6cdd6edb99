//! Contract §1's table is the routing: each function binary serves exactly the types the
//! table lists for it, and receives WeChat Pay's notifications exactly where the table says.
//! The table and each binary's `main.rs` are read from the repository, so a type routed
//! where the contract does not list it (or listed where it is not routed) fails here.

use std::collections::BTreeSet;
use std::path::Path;

use wxpay_shared::handlers::{self, Routes, ORDER_CALLBACK, REFUND_CALLBACK};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ sits in the repository")
}

/// `(binary, its cell)` for each row of §1's table.
fn contract_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("docs/CONTRACT.md")).expect("the contract");
    let section = text
        .split("\n## 1. What runs")
        .nth(1)
        .and_then(|s| s.split("\n## 2.").next())
        .expect("contract §1");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (cells[0].trim_matches('`').to_string(), cells[1].to_string())
        })
        .collect()
}

/// The backticked names in a cell.
fn quoted(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The routing table a binary's `main.rs` runs.
fn routes_of(binary: &str) -> &'static Routes {
    let main = std::fs::read_to_string(repo().join(format!("functions/{binary}/src/main.rs")))
        .unwrap_or_else(|e| panic!("functions/{binary}/src/main.rs: {e}"));
    let table = main
        .split("handlers::")
        .nth(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .unwrap_or_else(|| panic!("{binary}'s main.rs runs no handlers table"));
    match table.as_str() {
        "ALL_TYPES" => handlers::ALL_TYPES,
        "ORDER_TYPES" => handlers::ORDER_TYPES,
        "CALLBACK_TYPES" => handlers::CALLBACK_TYPES,
        "QUERY_TYPES" => handlers::QUERY_TYPES,
        "REFUND_TYPES" => handlers::REFUND_TYPES,
        other => panic!("{binary} runs {other}, which this test does not know"),
    }
}

#[test]
fn each_binary_serves_exactly_what_contract_section_1_lists() {
    let rows = contract_rows();
    assert_eq!(rows.len(), 5, "five binaries: {rows:?}");
    let mut above = BTreeSet::new();
    for (binary, cell) in &rows {
        let notifications = cell.contains("notifications") || cell.contains("every type");
        let mut listed = if cell.contains("every type above") {
            above.clone()
        } else {
            quoted(cell)
        };
        if notifications {
            // Notifications are typed by their signed body; these names only refuse calls.
            listed.extend([ORDER_CALLBACK.to_string(), REFUND_CALLBACK.to_string()]);
        }
        above.extend(listed.iter().cloned());
        let routes = routes_of(binary);
        let served: BTreeSet<String> = routes.types().map(str::to_string).collect();
        assert_eq!(
            served, listed,
            "{binary} serves other types than contract §1 lists"
        );
        assert_eq!(
            routes.notifications.is_some(),
            notifications,
            "{binary}: WeChat Pay's notifications are received where contract §1 says"
        );
    }
}

#[test]
fn the_reconciliation_runs_only_beside_the_schedules() {
    for binary in ["wxpay_order", "wxpay_query", "wxpay_refund"] {
        assert!(
            !routes_of(binary).types().any(|t| t == handlers::RECONCILE),
            "{binary} must not serve wxpay_reconcile"
        );
    }
    assert!(routes_of("wxpay_callback")
        .types()
        .any(|t| t == handlers::RECONCILE));
}
