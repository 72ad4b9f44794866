//! Who may query: a bearer token, or a user and password (HTTP basic, as Flight SQL clients send
//! it), checked on every call. A Flight `Handshake` with a valid password returns a session token
//! (`authorization: Bearer …`), which clients then send instead of the password.
//!
//! Credentials are required unless the operator turns them off (`--no-auth`, loopback only). A
//! peer that keeps failing is held off: after [`FAILURES_BEFORE_HOLD`] failures in a row, its calls
//! are refused unchecked for a while that doubles with each further failure, up to [`MAX_HOLD`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use tonic::{Request, Status};

/// How long a session token from a password handshake stays valid.
pub const SESSION_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The shortest bearer token or password accepted on the command line.
pub const MIN_TOKEN_LEN: usize = 16;

/// Failed logins in a row from one address before it is held off.
pub const FAILURES_BEFORE_HOLD: u32 = 5;

/// The first hold; each further failure doubles it, up to [`MAX_HOLD`].
pub const FIRST_HOLD: Duration = Duration::from_secs(1);

/// The longest a failing address is held off.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// Addresses whose failures are remembered at once; past it, the quietest are forgotten.
const MAX_TRACKED_PEERS: usize = 10_000;

/// Session tokens held at once; past it, the oldest is dropped (its client logs in again).
pub const MAX_SESSIONS: usize = 10_000;

/// A password or token: shown as `***` by `Debug`, so it never reaches a log or a panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What the server accepts. With neither a token nor a user, every call is accepted (loopback only).
#[derive(Default)]
pub struct Auth {
    token: Option<Secret>,
    basic: Option<(String, Secret)>,
    /// Session token → its user and when it was issued.
    sessions: Mutex<HashMap<String, (String, Instant)>>,
    /// Failed logins by peer address.
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// One address's failed logins in a row.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// Calls before this are refused unchecked.
    held_until: Option<Instant>,
}

/// Shows what is configured, never a secret or a session token.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sessions = self.sessions.lock().map_or(0, |s| s.len());
        f.debug_struct("Auth").field("token", &self.token).field("basic", &self.basic).field("sessions", &sessions).finish()
    }
}

/// Standard base64 with or without `=` padding (the Go Flight client sends none).
const BASE64: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));

/// Compares secrets in time independent of where they differ (BLAKE3 hashes compare in constant time).
fn same_secret(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// Credentials the server will not start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("the token is too short: use at least {} characters (e.g. `openssl rand -hex 32`)", MIN_TOKEN_LEN)]
    TokenTooShort,
    #[error("bad user name {user:?}: use printable ASCII without spaces or ':'")]
    BadUserName { user: String },
    #[error("the password of user {user:?} is too short: use at least {} characters in CIMLAKE_PASSWORD, as for a token", MIN_TOKEN_LEN)]
    PasswordTooShort { user: String },
}

impl Auth {
    pub fn new(token: Option<Secret>, basic: Option<(String, Secret)>) -> Result<Self, AuthConfigError> {
        if let Some(t) = &token
            && t.expose().chars().count() < MIN_TOKEN_LEN
        {
            return Err(AuthConfigError::TokenTooShort);
        }
        if let Some((user, password)) = &basic {
            if user.is_empty() || user.contains(':') || !user.chars().all(|c| c.is_ascii_graphic()) {
                return Err(AuthConfigError::BadUserName { user: user.clone() });
            }
            if password.expose().chars().count() < MIN_TOKEN_LEN {
                return Err(AuthConfigError::PasswordTooShort { user: user.clone() });
            }
        }
        Ok(Auth { token, basic, sessions: Mutex::default(), failures: Mutex::default() })
    }

    /// Whether any credentials are required.
    pub fn required(&self) -> bool {
        self.token.is_some() || self.basic.is_some()
    }

    /// The user a call is made as, from its `authorization` header; refuses the call when the
    /// header is missing or wrong, or when its address is held off after failing too often.
    pub fn check<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        if !self.required() {
            return Ok(Principal::Anonymous);
        }
        let peer = request.remote_addr().map(|a| a.ip());
        if let Some(peer) = peer {
            self.held_off(peer, Instant::now())?;
        }
        let checked = self.check_credentials(request);
        if let Some(peer) = peer {
            match &checked {
                Ok(_) => self.succeeded(peer),
                // A call without credentials is a client asking what to send, not a guess.
                Err(status) if request.metadata().contains_key("authorization") => self.failed(peer, Instant::now(), status),
                Err(_) => {}
            }
        }
        checked
    }

    /// Refuses a call from `peer` while it is held off.
    fn held_off(&self, peer: IpAddr, now: Instant) -> Result<(), Status> {
        let failures = self.failures.lock().expect("no panics while held");
        match failures.get(&peer).and_then(|f| f.held_until) {
            Some(until) if until > now => Err(Status::unauthenticated(format!(
                "too many failed logins from {peer}: try again in {} s",
                (until - now).as_secs_f64().ceil() as u64
            ))),
            _ => Ok(()),
        }
    }

    fn succeeded(&self, peer: IpAddr) {
        let mut failures = self.failures.lock().expect("no panics while held");
        failures.remove(&peer);
    }

    fn failed(&self, peer: IpAddr, now: Instant, status: &Status) {
        let mut failures = self.failures.lock().expect("no panics while held");
        if failures.len() >= MAX_TRACKED_PEERS
            && !failures.contains_key(&peer)
            && let Some(quietest) = failures.iter().min_by_key(|(_, f)| f.last).map(|(p, _)| *p)
        {
            failures.remove(&quietest);
        }
        let f = failures.entry(peer).or_insert(Failures { count: 0, last: now, held_until: None });
        f.count += 1;
        f.last = now;
        if f.count >= FAILURES_BEFORE_HOLD {
            let doublings = (f.count - FAILURES_BEFORE_HOLD).min(16);
            let hold = FIRST_HOLD.saturating_mul(1 << doublings).min(MAX_HOLD);
            f.held_until = Some(now + hold);
            // One line per hold, not per failure: the log stays readable under a guessing attack.
            let line = format!("auth: {peer} held off for {} s after {} failed logins in a row ({})\n", hold.as_secs(), f.count, status.message());
            use std::io::Write as _;
            std::io::stderr().lock().write_all(line.as_bytes()).ok();
        }
    }

    fn check_credentials<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let Some(header) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(self.what_to_send("no credentials were sent")));
        };
        let header = header.to_str().map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if self.token.as_ref().is_some_and(|t| same_secret(t.expose(), value)) {
                return Ok(Principal::Token);
            }
            if let Some(user) = self.session(value) {
                return Ok(Principal::User(user));
            }
            return Err(Status::unauthenticated("wrong or expired token"));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = BASE64.decode(value).map_err(|_| Status::unauthenticated("the basic credentials are not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| Status::unauthenticated("the basic credentials are not UTF-8"))?;
            let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
            return match &self.basic {
                Some((u, p)) if same_secret(u, user) & same_secret(p.expose(), password) => Ok(Principal::User(u.clone())),
                _ => Err(Status::unauthenticated("wrong user or password")),
            };
        }
        Err(Status::unauthenticated(self.what_to_send(&format!("unsupported authorization scheme {scheme:?}"))))
    }

    fn what_to_send(&self, problem: &str) -> String {
        let mut ways = Vec::new();
        if self.token.is_some() {
            ways.push("a bearer token (authorization: Bearer …)");
        }
        if self.basic.is_some() {
            ways.push("a user and password");
        }
        format!("{problem}: this server needs {}", ways.join(" or "))
    }

    /// A new session token for `user` (after a password handshake).
    pub fn start_session(&self, user: &str) -> String {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = blake3::Hash::from_bytes(bytes).to_hex().to_string();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("no panics while held");
        sessions.retain(|_, (_, started)| now.duration_since(*started) < SESSION_TOKEN_LIFETIME);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, (_, started))| *started).map(|(t, _)| t.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(token.clone(), (user.to_string(), now));
        token
    }

    fn session(&self, token: &str) -> Option<String> {
        let sessions = self.sessions.lock().expect("no panics while held");
        let (user, started) = sessions.get(token)?;
        (started.elapsed() < SESSION_TOKEN_LIFETIME).then(|| user.clone())
    }
}

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials are required.
    Anonymous,
    /// The server's bearer token.
    Token,
    /// A user, by password or by a session token from a password handshake.
    User(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Token => f.write_str("token"),
            Principal::User(u) => write!(f, "user {u}"),
        }
    }
}

/// Checks every call before it reaches the service.
pub fn interceptor(auth: Arc<Auth>) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let who = auth.check(&request)?;
        request.extensions_mut().insert(who);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: &str) -> Request<()> {
        let mut r = Request::new(());
        r.metadata_mut().insert("authorization", value.parse().unwrap());
        r
    }

    #[test]
    fn tokens_passwords_and_sessions() {
        let auth = Auth::new(Some("0123456789abcdef-token".into()), Some(("analyst".into(), "s3cret pw, long enough!".into()))).unwrap();
        assert_eq!(auth.check(&with_header("Bearer 0123456789abcdef-token")).unwrap(), Principal::Token);
        assert_eq!(auth.check(&with_header("bearer 0123456789abcdef-token")).unwrap(), Principal::Token);
        let err = auth.check(&with_header("Bearer 0123456789abcdef-tokeN")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let err = auth.check(&Request::new(())).unwrap_err();
        assert!(err.message().contains("bearer token") && err.message().contains("user and password"), "{}", err.message());
        // Padded (Java) and unpadded (Go) basic credentials.
        let padded = base64::engine::general_purpose::STANDARD.encode("analyst:s3cret pw, long enough!");
        let unpadded = padded.trim_end_matches('=');
        assert_ne!(padded, unpadded);
        for b in [padded.as_str(), unpadded] {
            assert_eq!(auth.check(&with_header(&format!("Basic {b}"))).unwrap(), Principal::User("analyst".into()));
        }
        let wrong = base64::engine::general_purpose::STANDARD.encode("analyst:s3cret");
        assert!(auth.check(&with_header(&format!("Basic {wrong}"))).unwrap_err().message().contains("wrong user or password"));
        let session = auth.start_session("analyst.two");
        assert_eq!(auth.check(&with_header(&format!("Bearer {session}"))).unwrap(), Principal::User("analyst.two".into()));
        // The session map is bounded: the oldest token goes first.
        for _ in 0..MAX_SESSIONS {
            auth.start_session("analyst");
        }
        assert!(auth.check(&with_header(&format!("Bearer {session}"))).is_err());
        assert_eq!(auth.sessions.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn weak_settings_are_refused_and_no_auth_accepts_all() {
        let err = |token: Option<&str>, basic: Option<(&str, &str)>| Auth::new(token.map(Secret::from), basic.map(|(u, p)| (u.to_string(), p.into()))).unwrap_err();
        assert_eq!(err(Some("short"), None), AuthConfigError::TokenTooShort);
        assert!(err(Some("short"), None).to_string().contains("too short"));
        assert!(err(None, Some(("a", ""))).to_string().contains("CIMLAKE_PASSWORD"));
        // A password is held to a token's length.
        let e = err(None, Some(("a", "fifteen chars!!"))).to_string();
        assert!(e.contains("too short") && e.contains("16 characters"), "{e}");
        assert_eq!(
            e,
            "the password of user \"a\" is too short: use at least 16 characters in CIMLAKE_PASSWORD, as for a token"
        );
        assert!(Auth::new(None, Some(("a".into(), "sixteen chars!!!".into()))).is_ok());
        assert_eq!(err(None, Some(("é", "a long enough password"))), AuthConfigError::BadUserName { user: "é".into() });
        assert!(err(None, Some(("é", "a long enough password"))).to_string().contains("bad user name"));
        let open = Auth::new(None, None).unwrap();
        assert_eq!(format!("{:?}", Auth::new(Some("0123456789abcdef-token".into()), None).unwrap()).matches("0123").count(), 0);
        assert!(!open.required());
        assert_eq!(open.check(&Request::new(())).unwrap(), Principal::Anonymous);
    }

    #[test]
    fn a_peer_that_keeps_failing_is_held_off_for_longer_each_time() {
        let auth = Auth::new(Some("0123456789abcdef-token".into()), None).unwrap();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        let wrong = Status::unauthenticated("wrong or expired token");
        for _ in 0..FAILURES_BEFORE_HOLD - 1 {
            auth.failed(peer, t0, &wrong);
        }
        assert!(auth.held_off(peer, t0).is_ok(), "held off before the limit");
        auth.failed(peer, t0, &wrong);
        let err = auth.held_off(peer, t0).unwrap_err();
        assert!(err.message().contains("too many failed logins from 192.0.2.7: try again in 1 s"), "{}", err.message());
        assert!(auth.held_off(other, t0).is_ok(), "another address is not held off");
        assert!(auth.held_off(peer, t0 + FIRST_HOLD).is_ok(), "the hold ends");
        // Each further failure doubles the hold, up to the cap.
        auth.failed(peer, t0 + FIRST_HOLD, &wrong);
        assert!(auth.held_off(peer, t0 + FIRST_HOLD * 2).is_err());
        assert!(auth.held_off(peer, t0 + FIRST_HOLD * 3).is_ok());
        for _ in 0..40 {
            auth.failed(peer, t0, &wrong);
        }
        assert!(auth.held_off(peer, t0 + MAX_HOLD - Duration::from_millis(1)).is_err());
        assert!(auth.held_off(peer, t0 + MAX_HOLD).is_ok());
        // A success forgets the failures.
        auth.succeeded(peer);
        assert!(auth.held_off(peer, t0).is_ok());
        auth.failed(peer, t0, &wrong);
        assert!(auth.held_off(peer, t0).is_ok());
    }
}
