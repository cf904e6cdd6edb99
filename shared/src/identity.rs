//! Who is calling, from sources the platform vouches for (README "Who may call what").
//!
//! - A `callFunction` event: `userInfo.openId`, which the platform adds.
//! - HTTP: `X-WX-OPENID`, only with `TRUST_OPENID_HEADER` (a gateway such as CloudBase sets
//!   it and strips clients' copies); otherwise a request carrying it is refused, never
//!   silently believed or ignored.
//! - A session token from `wxpay_login` (`Authorization: Bearer`, or `sessionToken` in a
//!   raw event), on every deployment: verified before its openid is believed.
//! - Trusted callers: the internal secret, compared in constant time.
//! - The payer's IP (H5): the address the platform's own edge saw, never an
//!   `X-Forwarded-For` entry the client wrote.

use std::net::IpAddr;

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::call::{Call, Caller};
use crate::config::{Config, EventShape};
use crate::error::AppError;
use crate::session::TokenError;
use crate::state::App;
use crate::util::{is_valid_openid, now_utc, secret_eq};

/// The headers a gateway sets for the mini-program user; a client can write them too.
const PLATFORM_IDENTITY_HEADER: &str = "x-wx-openid";
/// The app the gateway's openid belongs to.
const PLATFORM_APP_HEADER: &str = "x-wx-appid";
/// Set by the gateway when another app shares this environment's resources (资源复用): the
/// caller is that app's user.
const PLATFORM_FROM_APP_HEADER: &str = "x-wx-from-appid";

/// An openid is unique only within one app, and one cloud environment can serve several
/// apps (mini-programs, official accounts, resource sharing): an identity is believed only
/// when the platform says it belongs to `WECHAT_APPID`'s app.
fn own_app(config: &Config, app: Option<&str>, what: &str) -> Result<(), AppError> {
    match app {
        Some(app) if app == config.appid => Ok(()),
        Some(app) => {
            let shown: String = app.chars().take(40).collect();
            Err(AppError::Forbidden(format!(
                "{what} is {shown:?}, not WECHAT_APPID: an openid of another app names nobody here"
            )))
        }
        None => Err(AppError::Forbidden(format!(
            "{what} is missing, so the openid cannot be placed in any app: refused"
        ))),
    }
}

/// Where an HTTP request came from, which decides whether identity headers may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Local HTTP on `HOST:PORT`: the SCF / CloudBase web function, or a local run.
    Listener,
    /// A Lambda HTTP event (API Gateway v1/v2, ALB).
    LambdaEvent,
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Decides whether a presented secret makes the caller trusted. A wrong secret is refused
/// outright rather than silently downgraded, so misconfigured backends notice.
pub fn trust(config: &Config, presented: Option<&str>) -> Result<bool, AppError> {
    let Some(presented) = presented else {
        return Ok(false);
    };
    match &config.internal_secret {
        Some(expected) if secret_eq(presented, expected.expose()) => Ok(true),
        Some(_) => Err(AppError::Forbidden("the internal secret is wrong".into())),
        None => Err(AppError::Forbidden(
            "this deployment has no INTERNAL_API_SECRET, so no caller is trusted".into(),
        )),
    }
}

/// The openid a gateway put in `X-WX-OPENID`, if this deployment believes it. A request
/// that carries the header where it is not believed is refused: anyone can write it.
pub fn header_openid(
    config: &Config,
    headers: &HeaderMap,
    transport: Transport,
) -> Result<Option<String>, AppError> {
    if !headers.contains_key(PLATFORM_IDENTITY_HEADER) {
        return Ok(None);
    }
    if !config.trust_openid_header {
        return Err(AppError::Forbidden(
            "X-WX-OPENID is not believed here: anyone can send it. Set TRUST_OPENID_HEADER=true only where the gateway sets it and strips clients' copies (CloudBase); otherwise call with callFunction (userInfo) or through your backend".into(),
        ));
    }
    if transport == Transport::LambdaEvent && config.event_shape != EventShape::Http {
        // Under `auto`, a callFunction data object dressed up as an HTTP event would be
        // read as one, and its headers believed.
        return Err(AppError::Forbidden(format!(
            "X-WX-OPENID is believed in Lambda only with LAMBDA_EVENT_SHAPE=http (TRUST_OPENID_HEADER is on, LAMBDA_EVENT_SHAPE is {})",
            config.event_shape.as_str()
        )));
    }
    own_app(config, header(headers, PLATFORM_APP_HEADER), "X-WX-APPID")?;
    if let Some(from) = header(headers, PLATFORM_FROM_APP_HEADER) {
        own_app(config, Some(from), "X-WX-FROM-APPID")?;
    }
    Ok(header(headers, PLATFORM_IDENTITY_HEADER).map(str::to_string))
}

/// The openid the platform put in a `callFunction` event's `userInfo`, if it vouches for a
/// user of this merchant's mini-program. An openid is only unique within one app, and one
/// cloud environment can serve several mini-programs: a user of another app (another
/// `userInfo.appId`, or none) is refused rather than taken for whoever has that openid here.
pub fn user_info_openid(
    config: &Config,
    event: &Map<String, Value>,
) -> Result<Option<String>, AppError> {
    let Some(info) = event.get("userInfo") else {
        return Ok(None);
    };
    let app = info.get("appId");
    let openid = info
        .get("openId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if openid.is_none() && app.is_none() {
        return Ok(None);
    }
    own_app(config, app.and_then(Value::as_str), "userInfo.appId")?;
    Ok(openid.map(str::to_string))
}

/// The last `X-Forwarded-For` entry: the address the nearest proxy received the request
/// from. Every entry before it was written by the client (or proxies it chose).
pub fn last_forwarded_for(headers: &HeaderMap) -> Option<String> {
    let last_line = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?;
    let entry = last_line.rsplit(',').next()?.trim();
    entry.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// The client's address when serving HTTP ourselves. Behind the platform's proxy (an SCF /
/// CloudBase web function: the peer is on a private or loopback address) it is the entry
/// that proxy appended; a peer on a public address is the client itself.
pub fn listener_client_ip(peer: IpAddr, headers: &HeaderMap) -> String {
    let behind_proxy = match peer {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    };
    if behind_proxy {
        if let Some(ip) = last_forwarded_for(headers) {
            return ip;
        }
    }
    peer.to_string()
}

/// The openid a session token vouches for, if the call carries one. A token that does not
/// verify is refused, never ignored: the caller meant to be someone.
pub fn session_openid(app: &App, token: Option<&str>) -> Result<Option<String>, AppError> {
    let Some(token) = token else {
        return Ok(None);
    };
    let tokens = app.sessions.as_ref().ok_or(TokenError::Disabled)?;
    Ok(Some(tokens.verify(token, now_utc())?))
}

/// `Authorization: Bearer <token>`; other schemes are not ours to interpret.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A raw event's `sessionToken` field.
pub fn session_token_field(event: &Map<String, Value>) -> Result<Option<&str>, AppError> {
    match event.get("sessionToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => Ok(Some(t.as_str())),
        Some(_) => Err(AppError::invalid("field `sessionToken` must be a string")),
    }
}

/// The caller's one identity: the platform's, or the session token's when they agree.
pub fn one_identity(
    platform: Option<String>,
    session: Option<String>,
) -> Result<Option<String>, AppError> {
    match (platform, session) {
        (Some(p), Some(s)) if p != s => Err(AppError::Forbidden(
            "the session token and the platform name different users".into(),
        )),
        (p, s) => Ok(p.or(s)),
    }
}

/// Builds the call from a JSON object once the platform identity and trust are known.
/// `userInfo` and `internalSecret` never reach the handlers.
pub fn build_call(
    mut data: Map<String, Value>,
    platform_openid: Option<String>,
    trusted: bool,
    client_ip: Option<String>,
) -> Result<Call, AppError> {
    data.remove("userInfo");
    data.remove("internalSecret");
    data.remove("sessionToken");
    let ty = match data.remove("type") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.trim().to_string(),
        Some(_) => {
            return Err(AppError::UnknownType(
                "field `type` must be a string naming the operation, e.g. \"wxpay_order\"".into(),
            ))
        }
        None => return Err(AppError::UnknownType(
            "field `type` is missing; e.g. {\"type\":\"wxpay_order\",\"packageType\":\"basic\"}"
                .into(),
        )),
    };
    if let Some(o) = &platform_openid {
        if !is_valid_openid(o) {
            return Err(AppError::invalid("the caller's openid is malformed"));
        }
    }
    let mut openid = platform_openid;
    match data.remove("openid") {
        None | Some(Value::Null) => {}
        Some(Value::String(o)) if trusted => {
            if !is_valid_openid(&o) {
                return Err(AppError::invalid("field `openid` is malformed"));
            }
            openid = Some(o);
        }
        Some(Value::String(o)) if openid.as_deref() == Some(o.as_str()) => {}
        Some(_) => {
            return Err(AppError::Forbidden(
                "field `openid` can only be set by trusted callers; mini-program users are identified by the platform".into(),
            ))
        }
    }
    Ok(Call {
        ty,
        data,
        caller: Caller {
            openid,
            trusted,
            client_ip,
            scheduled: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_proxy_appended_entry_is_the_last_one() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9")]);
        assert_eq!(last_forwarded_for(&h).as_deref(), Some("203.0.113.9"));
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(last_forwarded_for(&h).as_deref(), Some("198.51.100.7"));
        let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip")]);
        assert_eq!(last_forwarded_for(&h), None);
    }

    #[test]
    fn a_public_peer_is_the_client_whatever_it_forwards() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        let public: IpAddr = "198.51.100.20".parse().unwrap();
        assert_eq!(listener_client_ip(public, &h), "198.51.100.20");
        let proxy: IpAddr = "10.0.0.3".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9")]);
        assert_eq!(listener_client_ip(proxy, &h), "203.0.113.9");
        assert_eq!(listener_client_ip(proxy, &HeaderMap::new()), "10.0.0.3");
    }
}
