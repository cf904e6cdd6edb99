//! Keeping other web pages away from the simulator.
//!
//! The console's buttons call the control API, which takes no credentials so that any
//! harness can drive it. A page the developer happens to visit could otherwise POST to
//! `http://127.0.0.1:9100/sim/pay/…` (a "simple" cross-site request needs no preflight), or
//! reach it under its own name through DNS rebinding. Browsers say where a request comes
//! from: `Sec-Fetch-Site` (every current browser) and `Origin` (every POST). So a request
//! that carries either must come from the simulator's own page, addressed by a loopback
//! name; one that carries neither is not from a browser (curl, SDKs, tests) and passes as
//! before. Nothing is needed in the page itself: no token to leak or to forget.

use std::net::SocketAddr;

use http::HeaderMap;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// `Host` names the simulator itself: a loopback name (or the address it is bound to) and
/// its port. Anything else is a browser sent here by a rebound DNS name.
fn own_host(host: &str, own: SocketAddr) -> bool {
    if host == own.to_string() {
        return true;
    }
    let Some((name, port)) = host.rsplit_once(':') else {
        return false;
    };
    port == own.port().to_string()
        && (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]")
}

/// Why a browser request to the control API, the console or the cashier is refused;
/// `None` lets it through.
pub(crate) fn refusal(method: &str, headers: &HeaderMap, own: SocketAddr) -> Option<String> {
    let site = header(headers, "sec-fetch-site");
    let origin = header(headers, "origin");
    if site.is_none() && origin.is_none() {
        return None;
    }
    let host = header(headers, "host").unwrap_or_default();
    if !own_host(host, own) {
        return Some(format!(
            "the simulator answers browsers only at http://127.0.0.1:{} or http://localhost:{} (this request named `{host}`)",
            own.port(),
            own.port()
        ));
    }
    let changes_state = !matches!(method, "GET" | "HEAD" | "OPTIONS");
    if !changes_state {
        return None;
    }
    if let Some(site) = site {
        if site != "same-origin" && site != "none" {
            return Some(format!(
                "refused a {site} request: only the simulator's own pages may change its state"
            ));
        }
    }
    if let Some(origin) = origin {
        if origin != format!("http://{host}") {
            return Some(format!(
                "refused a request from {origin}: only the simulator's own pages may change its state"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_simulators_own_pages_change_state() {
        let own: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let ok = |m: &str, p: &[(&'static str, &str)]| refusal(m, &headers(p), own).is_none();
        // curl, SDKs, test harnesses: no browser headers.
        assert!(ok("POST", &[("host", "127.0.0.1:9100")]));
        assert!(ok("POST", &[]));
        // The console's own buttons.
        let same = [
            ("host", "127.0.0.1:9100"),
            ("origin", "http://127.0.0.1:9100"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(ok("POST", &same));
        assert!(ok(
            "POST",
            &[
                ("host", "localhost:9100"),
                ("origin", "http://localhost:9100")
            ]
        ));
        // Another page's POST, with or without Sec-Fetch-Site.
        assert!(!ok(
            "POST",
            &[
                ("host", "127.0.0.1:9100"),
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ]
        ));
        assert!(!ok(
            "POST",
            &[("host", "127.0.0.1:9100"), ("origin", "null")]
        ));
        assert!(!ok(
            "POST",
            &[("host", "127.0.0.1:9100"), ("sec-fetch-site", "same-site")]
        ));
        // A page on another port of localhost is another origin.
        assert!(!ok(
            "POST",
            &[
                ("host", "127.0.0.1:9100"),
                ("origin", "http://127.0.0.1:8080")
            ]
        ));
        // DNS rebinding: the browser thinks it is same-origin, but the name is not ours.
        let rebound = [
            ("host", "evil.example:9100"),
            ("origin", "http://evil.example:9100"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(!ok("POST", &rebound));
        assert!(!ok(
            "GET",
            &[("host", "evil.example:9100"), ("sec-fetch-site", "none")]
        ));
        // Reading the console by its own name is fine.
        assert!(ok(
            "GET",
            &[("host", "127.0.0.1:9100"), ("sec-fetch-site", "cross-site")]
        ));
    }
}
