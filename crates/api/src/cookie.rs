//! The refresh token's cookie: the auth routes set and read it, and every route that ends the
//! caller's session clears it.

use http::{HeaderName, HeaderValue, header};

pub const REFRESH_COOKIE: &str = "refresh_token";
/// The cookie only travels to the auth routes, never to the rest of the API. A route elsewhere
/// may still clear it: a `Set-Cookie` names its own path.
pub const COOKIE_ATTRIBUTES: &str = "HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth";

/// The header that makes the browser forget the refresh cookie.
pub fn clear_refresh() -> [(HeaderName, HeaderValue); 1] {
    let cookie = format!("{REFRESH_COOKIE}=; Max-Age=0; {COOKIE_ATTRIBUTES}");
    [(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static("")),
    )]
}
