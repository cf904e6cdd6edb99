//! The history itself: versions, checksums, what a function serves, what migrate says.

use super::*;

#[test]
fn versions_count_up_from_one_and_checksums_are_stable() {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1, "{}", m.name);
        assert_eq!(m.checksum(), m.checksum());
        assert_eq!(m.checksum().len(), 64);
    }
    assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    // Recorded checksums of released migrations: changing a released migration's SQL
    // must fail here first, not on an operator's database.
    let released = [
        "7955e8f65a0cb2aedb2cfec07bae29f24960e84abd791a463c4f3eb4d8a4e44c",
        "2e71a62064889699ad917d7ab8dcd6cb63c25f68dbe00762a662735621a5222d",
        // refunds.reserved_at
        "6ab0618ac8c5f33648e74f6a0683fe02cdbf6379008a8f23faa40b1377f262b0",
        // reconciliation_progress
        "c99d7d5d415266b77e8770ca6dff46b0e2a2c2d8c4e9437a239f43b6c2f3466b",
    ];
    assert_eq!(released.len(), MIGRATIONS.len(), "every migration pinned");
    for (m, checksum) in MIGRATIONS.iter().zip(released) {
        assert_eq!(
            m.checksum(),
            checksum,
            "migration {} changed after release",
            m.version
        );
    }
}

#[test]
fn pending_is_what_is_missing_and_an_edited_migration_stops_it() {
    assert_eq!(pending(&[]).unwrap().len(), MIGRATIONS.len());
    let first = (1, MIGRATIONS[0].checksum());
    let left: Vec<u32> = pending(std::slice::from_ref(&first))
        .unwrap()
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(left, (2..=SCHEMA_VERSION).collect::<Vec<_>>());
    // A newer release's migration is not ours to judge.
    let newer = (i64::from(SCHEMA_VERSION) + 1, "f".repeat(64));
    assert!(pending(&[first.clone(), newer.clone()]).is_ok());
    assert_eq!(version_of(&[first, newer]), SCHEMA_VERSION + 1);
    let edited = (1, "0".repeat(64));
    let Err(err) = pending(&[edited]) else {
        panic!("an edited migration must stop migrate");
    };
    let err = err.to_string();
    assert!(
        err.contains("migration 1") && err.contains("edited"),
        "{err}"
    );
}

#[test]
fn a_function_serves_only_a_schema_it_can_follow() {
    let at = |version, newest_breaking| SchemaVersion {
        version,
        newest_breaking,
    };
    for behind in [at(None, None), at(Some(0), None), at(Some(1), None)] {
        let err = require_compatible(behind).unwrap_err().to_string();
        assert!(err.contains("wxpay_functions migrate"), "{err}");
        assert!(
            err.contains(&format!("needs version {SCHEMA_VERSION}")),
            "{err}"
        );
    }
    assert!(require_compatible(at(Some(SCHEMA_VERSION), Some(2))).is_ok());
    // A newer release added something this one ignores: still served.
    assert!(require_compatible(at(Some(SCHEMA_VERSION + 3), Some(2))).is_ok());
    // A newer release changed how rows are written: refused, naming what to do.
    let err = require_compatible(at(Some(SCHEMA_VERSION + 1), Some(SCHEMA_VERSION + 1)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("deploy that release"), "{err}");
}

#[test]
fn the_report_says_what_it_did_in_one_line_each() {
    let nothing = MigrationReport {
        applied: vec![],
        version: SCHEMA_VERSION,
    };
    assert_eq!(
        nothing.to_string(),
        format!("schema is at version {SCHEMA_VERSION}, nothing to do")
    );
    let two = MigrationReport {
        applied: MIGRATIONS
            .iter()
            .map(|m| AppliedMigration {
                version: m.version,
                name: m.name,
                took: Duration::from_millis(7),
            })
            .collect(),
        version: SCHEMA_VERSION,
    };
    let text = two.to_string();
    assert_eq!(text.lines().count(), MIGRATIONS.len());
    assert!(text.starts_with("applied migration 1 (baseline"), "{text}");
}

#[test]
fn the_statements_name_columns_the_migrations_leave() {
    let tables = current_tables();
    for (table, list) in [
        ("orders", crate::store::sql::ORDER_COLS),
        ("refunds", crate::store::sql::REFUND_COLS),
        ("notify_outbox", crate::store::sql::OUTBOX_COLS),
        ("payment_logs", crate::store::sql::LOG_COLS),
    ] {
        let (_, cols, _) = tables.iter().find(|(n, ..)| *n == table).expect(table);
        for name in list.split(',').map(str::trim) {
            assert!(
                cols.iter().any(|c| c.name == name),
                "{table}.{name} is not created by any migration"
            );
        }
    }
    let (_, orders, _) = &tables[0];
    assert_eq!(orders.last().map(|c| c.name), Some("refund_reserved"));
}

#[test]
fn the_dialects_name_their_own_types() {
    let steps = (MIGRATIONS[0].steps)();
    let Some(Step::CreateTable(orders)) = steps.first() else {
        panic!("migration 1 starts with the orders table");
    };
    let mysql = orders.create(Dialect::MySql);
    let sqlite = orders.create(Dialect::Sqlite);
    assert!(mysql.contains("out_trade_no VARBINARY(32) NOT NULL"));
    assert!(mysql.contains("openid VARCHAR(128) NULL"));
    assert!(mysql.contains("paid_at DATETIME(3) NULL"));
    assert!(mysql.contains("PRIMARY KEY (out_trade_no)"));
    assert!(sqlite.contains("out_trade_no TEXT NOT NULL"));
    assert!(sqlite.contains("refunded_amount INTEGER NOT NULL DEFAULT 0"));
    let outbox = steps
        .iter()
        .find_map(|s| match s {
            Step::CreateTable(t) if t.name == "notify_outbox" => Some(*t),
            _ => None,
        })
        .expect("outbox");
    assert!(outbox
        .create(Dialect::Sqlite)
        .contains("id INTEGER PRIMARY KEY AUTOINCREMENT"));
    assert!(!outbox.create(Dialect::Sqlite).contains("PRIMARY KEY (id)"));
    assert!(outbox
        .create(Dialect::MySql)
        .contains("id BIGINT NOT NULL AUTO_INCREMENT"));
    let exact = steps
        .iter()
        .find_map(|s| s.statement(Dialect::MySql).filter(|q| q.contains("MODIFY")));
    assert_eq!(
        exact.as_deref(),
        Some("ALTER TABLE orders MODIFY COLUMN out_trade_no VARBINARY(32) NOT NULL")
    );
    assert!(steps
        .iter()
        .filter(|s| matches!(s, Step::ExactIdentifier { .. }))
        .all(|s| s.statement(Dialect::Sqlite).is_none()));
}
