//! The local HTTP listener (how an SCF / CloudBase web function is served) outlives a
//! moment without file descriptors.
//!
//! The story: the built router runs with 64 file descriptors. Clients open 100 idle
//! connections; the process takes what it can and then cannot accept more (EMFILE). It
//! must say so and keep listening: once the clients hang up it answers again. Before, the
//! accept loop returned the error, the process exited, and every later call to the
//! instance was refused until the platform replaced it (the chaos campaign's instance that
//! "answered 0 after 0 ms" for minutes).

mod support;

use std::time::{Duration, Instant};

use support::{Scratch, Server};
use wxpay_local::{LocalEnv, LocalOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_stop_the_listener() {
    let scratch = Scratch::new("fd-limit");
    let env = LocalEnv::start(LocalOptions::for_tests())
        .await
        .expect("simulator and backend start");
    let mut server = Server::start_with(&env.vars, &scratch.0, Some(64)).await;
    let addr = server.url.trim_start_matches("http://").to_string();

    // Idle clients, more than the process has descriptors for. The kernel completes each
    // handshake (the listen backlog holds what the process cannot take).
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("the kernel takes the connection"),
        );
    }
    let started = Instant::now();
    while !server.logs().contains("cannot accept a connection") {
        assert!(
            !server.exited(),
            "the router exited when it ran out of file descriptors:\n{}",
            server.logs()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the router never ran out of descriptors, so this test proves nothing:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The clients go away; the instance answers again, without a restart.
    drop(held);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let started = Instant::now();
    loop {
        assert!(
            !server.exited(),
            "the router exited after running out of file descriptors:\n{}",
            server.logs()
        );
        match http.get(format!("{}/healthz", server.url)).send().await {
            Ok(r) if r.status().is_success() => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(20),
                "the router did not answer again ({other:?}):\n{}",
                server.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
