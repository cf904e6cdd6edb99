//! `wxpay-load`: drives the router binary (and optionally the Node.js reference).

fn main() {}
