//! TLS to MySQL: MySQL's own `ssl-mode` in `DATABASE_URL`, a private CA in
//! `DATABASE_CA_PEM`, and the `mysql_async` options and pools they become.
//!
//! A mode that requires TLS (REQUIRED and above) never falls back to plain TCP, and the
//! driver asks for TLS right after the server's greeting, before the login packet: a
//! server without TLS gets nothing from us, not even the user name. Only PREFERRED falls
//! back, and only when the server offers no TLS at all (as MySQL's own clients do).

use std::sync::atomic::{AtomicBool, Ordering};

use mysql_async::{Conn, DriverError, IoError, Opts, OptsBuilder, Pool, SslOpts};

/// MySQL's `--ssl-mode`, spelled as MySQL's clients take it in `DATABASE_URL`
/// (`?ssl-mode=VERIFY_IDENTITY`, any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    const ALL: [SslMode; 5] = [
        SslMode::Disabled,
        SslMode::Preferred,
        SslMode::Required,
        SslMode::VerifyCa,
        SslMode::VerifyIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "DISABLED",
            SslMode::Preferred => "PREFERRED",
            SslMode::Required => "REQUIRED",
            SslMode::VerifyCa => "VERIFY_CA",
            SslMode::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }

    fn parse(value: &str) -> Option<SslMode> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(value))
    }
}

/// `DATABASE_CA_PEM`: the certificates a verified connection must chain to, instead of the
/// built-in web roots.
#[derive(Clone)]
pub struct DatabaseCa {
    certs: Vec<Vec<u8>>,
}

impl std::fmt::Debug for DatabaseCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseCa({} certificate(s))", self.certs.len())
    }
}

impl DatabaseCa {
    /// `DATABASE_CA_PEM`, or `DATABASE_CA_PEM_FILE` where a provider's bundle would not fit
    /// in an environment variable (Lambda allows 4 KB for all of them together). The message
    /// names the variable.
    pub fn from_settings(
        text: Option<String>,
        file: Option<String>,
    ) -> Result<Option<DatabaseCa>, String> {
        let (name, text) = match (text, file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err("set DATABASE_CA_PEM or DATABASE_CA_PEM_FILE, not both".into())
            }
            (Some(text), None) => ("DATABASE_CA_PEM", text),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => ("DATABASE_CA_PEM_FILE", text),
                Err(e) => return Err(format!("DATABASE_CA_PEM_FILE: cannot read {path}: {e}")),
            },
        };
        Self::from_pem_text(&text)
            .map(Some)
            .map_err(|e| format!("{name}: {e}"))
    }

    /// PEM text with one or more certificates (a provider's bundle), written the way the
    /// other PEM settings accept it: literal `\n`, surrounding quotes, or base64 of the PEM.
    /// The message never repeats the text.
    pub fn from_pem_text(text: &str) -> Result<DatabaseCa, String> {
        let pem_text = crate::crypto::normalize_pem_text(text)
            .ok_or("not PEM text (expected -----BEGIN CERTIFICATE-----)")?;
        let blocks =
            pem::parse_many(pem_text.as_bytes()).map_err(|e| format!("malformed PEM ({e})"))?;
        if blocks.is_empty() {
            return Err("no PEM block found".into());
        }
        let mut certs = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            if block.tag() != "CERTIFICATE" {
                return Err(format!(
                    "block {} is `{}`, not a CERTIFICATE",
                    i + 1,
                    block.tag()
                ));
            }
            x509_parser::parse_x509_certificate(block.contents())
                .map_err(|e| format!("certificate {} does not parse ({e})", i + 1))?;
            certs.push(block.contents().to_vec());
        }
        Ok(DatabaseCa { certs })
    }
}

/// The mysql_async parameters that would switch TLS on behind `ssl-mode`'s back.
const DRIVER_TLS_PARAMS: [&str; 4] = [
    "require_ssl",
    "verify_ca",
    "verify_identity",
    "built_in_roots",
];

/// Takes `ssl-mode` out of the URL (mysql_async does not know it) and refuses the driver's
/// own TLS parameters, so one setting decides. Messages name parameters, never values that
/// could be secrets.
pub(super) fn take_ssl_mode(url: &str) -> Result<(Option<SslMode>, String), String> {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        // mysql_async will say what is wrong with it.
        return Ok((None, url.to_string()));
    };
    let Some(query) = parsed.query().map(str::to_string) else {
        return Ok((None, url.to_string()));
    };
    let mut mode = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        if key.eq_ignore_ascii_case("ssl-mode") {
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            let parsed = SslMode::parse(&value).ok_or_else(|| {
                format!(
                    "ssl-mode must be one of {}",
                    SslMode::ALL.map(SslMode::as_str).join(", ")
                )
            })?;
            if mode.replace(parsed).is_some() {
                return Err("ssl-mode is given twice".into());
            }
        } else if DRIVER_TLS_PARAMS.contains(&key.as_ref()) {
            return Err(format!(
                "`{key}` is not read here; TLS is set with MySQL's ssl-mode \
                 (DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY) and a private \
                 CA with DATABASE_CA_PEM"
            ));
        } else {
            kept.push(pair);
        }
    }
    if mode.is_none() {
        return Ok((None, url.to_string()));
    }
    parsed.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    Ok((mode, parsed.to_string()))
}

/// What the store does about TLS, decided once from the URL and `DATABASE_CA_PEM`.
#[derive(Debug, Clone)]
pub(super) struct Tls {
    mode: SslMode,
    /// `host:port`, for messages.
    endpoint: String,
    ssl: Option<SslOpts>,
    /// REQUIRED because nothing was said: encrypted, but to a server nobody verified.
    unverified_by_default: bool,
}

impl Tls {
    /// Without `ssl-mode`: a unix socket is DISABLED (the driver never encrypts one); with
    /// `DATABASE_CA_PEM`, VERIFY_IDENTITY; this machine (loopback) is PREFERRED, as MySQL's
    /// own clients, so a plain local MariaDB keeps working; any other host is REQUIRED, so
    /// nothing crosses a network in clear unless someone wrote `ssl-mode=DISABLED`.
    pub(super) fn decide(
        requested: Option<SslMode>,
        opts: &Opts,
        ca: Option<&DatabaseCa>,
    ) -> Result<Tls, String> {
        let socket = opts.socket().is_some();
        let mode = match requested {
            Some(mode) => mode,
            None if socket => SslMode::Disabled,
            None if ca.is_some() => SslMode::VerifyIdentity,
            None if is_loopback(opts.ip_or_hostname()) => SslMode::Preferred,
            None => SslMode::Required,
        };
        let named = |m: SslMode| format!("ssl-mode={}", m.as_str());
        if socket && mode >= SslMode::Required {
            return Err(format!(
                "{} needs TLS, which a unix socket (`socket=`) does not carry here; \
                 connect over TCP, or use ssl-mode=DISABLED for a local socket",
                named(mode)
            ));
        }
        if opts.enable_cleartext_plugin() && mode < SslMode::VerifyCa {
            // REQUIRED encrypts, but to whoever answers: the password as it is would go to
            // anyone who can stand in the server's place.
            return Err(format!(
                "enable_cleartext_plugin sends the password as it is; it needs a verified \
                 server (ssl-mode=VERIFY_CA or VERIFY_IDENTITY), not {}",
                named(mode)
            ));
        }
        if ca.is_some() && mode < SslMode::VerifyCa {
            return Err(format!(
                "DATABASE_CA_PEM is set but {} does not verify the server's certificate; use \
                 ssl-mode=VERIFY_IDENTITY (or VERIFY_CA), or unset DATABASE_CA_PEM",
                named(mode)
            ));
        }
        if ca.is_none() && mode == SslMode::VerifyCa {
            // With the public web roots and no name check, any certificate any public CA
            // issued for any name would pass.
            return Err(
                "ssl-mode=VERIFY_CA needs the server's CA in DATABASE_CA_PEM \
                 (or use VERIFY_IDENTITY, which checks the host name against the public roots)"
                    .into(),
            );
        }
        let roots = || ca.map(|ca| ca.certs.iter().map(|der| der.clone().into()).collect());
        let ssl = match mode {
            SslMode::Disabled => None,
            // A socket is never encrypted by the driver: asking for TLS on one would break
            // the handshake instead of falling back.
            SslMode::Preferred if socket => None,
            // MySQL's PREFERRED and REQUIRED encrypt without checking who answers.
            SslMode::Preferred | SslMode::Required => {
                Some(SslOpts::default().with_danger_accept_invalid_certs(true))
            }
            SslMode::VerifyCa | SslMode::VerifyIdentity => Some(
                SslOpts::default()
                    // A private CA replaces the web roots: a certificate some public CA
                    // issued for the same name must not pass.
                    .with_disable_built_in_roots(ca.is_some())
                    .with_root_certs(roots().unwrap_or_default())
                    .with_danger_skip_domain_validation(mode == SslMode::VerifyCa),
            ),
        };
        Ok(Tls {
            mode,
            endpoint: format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
            ssl,
            unverified_by_default: requested.is_none() && mode == SslMode::Required,
        })
    }

    /// One pool with the TLS options, and for PREFERRED a plain one to fall back to.
    pub(super) fn pools(self, builder: OptsBuilder) -> Pools {
        if self.unverified_by_default {
            // Safe from a listener, not from whoever can answer in the server's place: a
            // server that asks for the password in full gets it, inside a TLS session with
            // nobody checked. Said once per store, where an operator reads it.
            tracing::warn!(
                "DATABASE_URL has no ssl-mode: {} is used with ssl-mode=REQUIRED, encrypted \
                 but without checking the server's certificate; set ssl-mode=VERIFY_IDENTITY \
                 (and DATABASE_CA_PEM for a private CA) so only the real server gets the password",
                self.endpoint
            );
        }
        let plain = (self.mode == SslMode::Preferred && self.ssl.is_some())
            .then(|| Pool::new(builder.clone().ssl_opts(None::<SslOpts>)));
        let main = match &self.ssl {
            // After logging in over TCP the driver would try the server's unix socket,
            // where it cannot speak TLS; that attempt would only fail.
            Some(ssl) => Pool::new(builder.ssl_opts(ssl.clone()).prefer_socket(false)),
            None => Pool::new(builder),
        };
        Pools {
            main,
            plain,
            no_tls_offered: AtomicBool::new(false),
            tls: self,
        }
    }
}

/// The store's connections, over TLS when the mode asks for it.
pub(super) struct Pools {
    main: Pool,
    plain: Option<Pool>,
    /// PREFERRED found a server without TLS; later connections go straight to `plain`.
    no_tls_offered: AtomicBool,
    tls: Tls,
}

impl Pools {
    pub(super) async fn get_conn(&self) -> Result<Conn, mysql_async::Error> {
        if let Some(plain) = &self.plain {
            if self.no_tls_offered.load(Ordering::Relaxed) {
                return plain.get_conn().await.map_err(|e| self.explain(e, false));
            }
            match self.main.get_conn().await {
                Err(e) if no_tls_offered(&e) => {
                    self.no_tls_offered.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        "{} offers no TLS; ssl-mode=PREFERRED continues in plain TCP",
                        self.tls.endpoint
                    );
                    return plain.get_conn().await.map_err(|e| self.explain(e, false));
                }
                other => return other.map_err(|e| self.explain(e, true)),
            }
        }
        let encrypted = self.tls.ssl.is_some();
        self.main
            .get_conn()
            .await
            .map_err(|e| self.explain(e, encrypted))
    }

    /// A connection TLS made impossible says so, with the host and the mode; a login the
    /// server refused over plain TCP says it was plain.
    fn explain(&self, e: mysql_async::Error, encrypted: bool) -> mysql_async::Error {
        let Tls { mode, endpoint, .. } = &self.tls;
        let mode = mode.as_str();
        let message = if no_tls_offered(&e) {
            format!(
                "TLS refused: {endpoint} offers no TLS and ssl-mode={mode} requires it; \
                 nothing else was sent to it (no user name, no password)"
            )
        } else if let Some(tls) = tls_failure(&e) {
            format!("TLS to {endpoint} failed (ssl-mode={mode}): {tls}")
        } else {
            return match e {
                // Access denied, or (MySQL) insecure transport prohibited: still the
                // server's refusal, now saying the login was made without TLS.
                mysql_async::Error::Server(mut s)
                    if !encrypted && matches!(s.code, ER_ACCESS_DENIED | ER_INSECURE_TRANSPORT) =>
                {
                    s.message = format!(
                        "{} [{endpoint} refused a login made without TLS (ssl-mode={mode}); \
                         if the account or the server requires TLS, set ssl-mode=VERIFY_IDENTITY]",
                        s.message
                    );
                    mysql_async::Error::Server(s)
                }
                other => other,
            };
        };
        mysql_async::Error::Other(message.into())
    }
}

const ER_ACCESS_DENIED: u16 = 1045;
const ER_INSECURE_TRANSPORT: u16 = 3159;

/// This machine. (The driver's own check misses `127.0.0.1`: a `mysql://` URL's host is
/// opaque text to the URL parser, never an IPv4 address.)
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn no_tls_offered(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)
    )
}

/// The TLS layer's own error, wherever mysql_async carries it.
fn tls_failure(e: &mysql_async::Error) -> Option<String> {
    match e {
        mysql_async::Error::Io(IoError::Tls(t)) => Some(t.to_string()),
        mysql_async::Error::Io(IoError::Io(io)) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
        _ => None,
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
