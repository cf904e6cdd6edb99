//! The internal secret goes to the configured backend and nowhere else: a backend (or
//! whoever answers in its name) that redirects the paid notification elsewhere does not
//! get the secret forwarded to the redirect's target.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, StoreKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every connection with `answer`, counting the requests it saw.
async fn raw_server(answer: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let _ = stream.read(&mut buf).await;
            count.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_backend_does_not_carry_the_secret_elsewhere() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (elsewhere, elsewhere_seen) = raw_server(ok.to_string()).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let (backend, backend_seen) = raw_server(redirect).await;
    let Some(h) = Harness::start_with(StoreKind::Sqlite, |o| {
        o.extra_vars.push(("API_BASE_URL".into(), backend.clone()));
    })
    .await
    else {
        return;
    };
    h.create_paid_order("o_redirect", "basic").await;
    for _ in 0..40 {
        if backend_seen.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        backend_seen.load(Ordering::SeqCst) > 0,
        "the backend was called"
    );
    assert_eq!(
        elsewhere_seen.load(Ordering::SeqCst),
        0,
        "the redirect's target got the delivery (and X-Internal-Secret)"
    );
}
