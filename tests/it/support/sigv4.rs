//! Offline verification of S3 presigned URLs (SigV4 query-string auth).
//!
//! Why this exists: the API under test hands out presigned S3 URLs, and the
//! tests run against the moto emulator, which accepts any signature. A URL
//! signed with the wrong secret, wrong region, wrong headers or a mangled key
//! would therefore "work" in the tests and fail against real S3. So the tests
//! recompute the signature themselves from the URL and the known test
//! credentials, following AWS Signature Version 4 for query-string auth
//! ("Authenticating Requests: Using Query Parameters", S3 API reference):
//!
//! * canonical URI: the path exactly as it appears in the URL (S3 does not
//!   double-encode it);
//! * canonical query string: every parameter except `X-Amz-Signature`, name
//!   and value URI-encoded (unreserved `A-Z a-z 0-9 - _ . ~` kept, all else
//!   `%XX` uppercase), sorted by name (then value);
//! * canonical headers: the headers named in `X-Amz-SignedHeaders`, as
//!   `name:value\n` with lowercase names and trimmed values; `host` comes
//!   from the URL (`host[:port]`, the port only when it is not the default);
//! * payload hash: `UNSIGNED-PAYLOAD`.
//!
//! Hand-written rather than built on `aws-sigv4` (the signer the S3 SDK itself uses): an oracle
//! that shares the signer's code would agree with it about whatever it gets wrong. AWS's
//! published example vector pins this one down (see its tests).
//!
//! URLs are expected to be path-style (`http://host/bucket/key?...`): the
//! `key` field is whatever follows the first path segment.

#![allow(dead_code)] // not every test binary uses every helper

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// Everything except the SigV4 unreserved characters gets `%XX` (uppercase).
const AWS_URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// A presigned URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// HTTP method the URL is meant for, uppercase (`GET`, `PUT`, ...).
    pub method: String,
    /// `host[:port]` as it must be sent in the `Host` header (default port dropped).
    pub host: String,
    /// The path, raw, exactly as in the URL (e.g. `/bucket/a%20b.png`).
    pub path: String,
    /// The object key: the percent-decoded path after the bucket segment.
    pub key: String,
    /// `X-Amz-Expires`.
    pub expires_secs: u64,
    /// `X-Amz-SignedHeaders`, split on `;`, in URL order.
    pub signed_headers: Vec<String>,
    /// `X-Amz-Credential` without the access key: `date/region/service/aws4_request`.
    pub credential_scope: String,
    /// `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: String,
    /// `X-Amz-Signature` (lowercase hex).
    pub signature: String,
    /// All query parameters, percent-decoded, in URL order (signature included).
    pub query: Vec<(String, String)>,
}

impl Presigned {
    /// The access key id from `X-Amz-Credential`.
    pub fn access_key_id(&self) -> &str {
        let cred = self.param("X-Amz-Credential").unwrap_or_default();
        cred.split('/').next().unwrap_or_default()
    }

    /// The decoded value of the first query parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a presigned URL. Panics with a descriptive message when the URL is
/// not an `http(s)` URL carrying complete SigV4 query-string auth parameters.
pub fn parse(method: &str, url: &str) -> Presigned {
    let fail = |why: &str| -> ! { panic!("malformed presigned URL ({why}): {url}") };

    let (rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, "443")
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, "80")
    } else {
        fail("expected an http:// or https:// URL")
    };
    let rest = rest.split('#').next().unwrap_or_default();

    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.is_empty() {
        fail("no host");
    }
    if authority.contains('@') {
        fail("userinfo in the authority is not supported");
    }
    // `[v6]:port` or `name:port`; the port is dropped when it is the default.
    let (hostname, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((_, "")) => (authority, None),
            Some((_, tail)) if tail.starts_with(':') => {
                (&authority[..authority.len() - tail.len()], Some(&tail[1..]))
            }
            _ => fail("bad IPv6 host"),
        },
        None => match authority.rsplit_once(':') {
            Some((h, port)) => (h, Some(port)),
            None => (authority, None),
        },
    };
    let host = match port {
        None => hostname.to_string(),
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => {
            fail("bad port")
        }
        Some(port) if port == default_port => hostname.to_string(),
        Some(_) => authority.to_string(),
    };

    let rest = &rest[authority_end..];
    let Some((path, raw_query)) = rest.split_once('?') else {
        fail("no query string")
    };
    let path = if path.is_empty() { "/" } else { path };

    let decode = |s: &str, what: &str| -> String {
        match percent_decode_str(s).decode_utf8() {
            Ok(v) => v.into_owned(),
            Err(_) => fail(&format!("{what} {s:?} does not decode to UTF-8")),
        }
    };

    let key = {
        let after_slash = path.strip_prefix('/').unwrap_or(path);
        let raw_key = after_slash.split_once('/').map(|(_, k)| k).unwrap_or("");
        decode(raw_key, "object key")
    };

    let query: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k, "query name"), decode(v, "query value"))
        })
        .collect();

    let required = |name: &str| -> String {
        let mut found = query.iter().filter(|(k, _)| k == name);
        match (found.next(), found.next()) {
            (Some((_, v)), None) if !v.is_empty() => v.clone(),
            (Some(_), Some(_)) => fail(&format!("{name} appears more than once")),
            _ => fail(&format!("missing {name}")),
        }
    };

    let algorithm = required("X-Amz-Algorithm");
    if algorithm != ALGORITHM {
        fail(&format!(
            "X-Amz-Algorithm is {algorithm:?}, expected {ALGORITHM}"
        ));
    }
    let credential = required("X-Amz-Credential");
    let credential_scope = match credential.split_once('/') {
        Some((access_key, scope))
            if !access_key.is_empty()
                && scope.split('/').count() == 4
                && scope.ends_with("/aws4_request") =>
        {
            scope.to_string()
        }
        _ => fail("X-Amz-Credential is not access_key/date/region/service/aws4_request"),
    };
    let amz_date = required("X-Amz-Date");
    if amz_date.len() != 16
        || !amz_date.starts_with(credential_scope.split('/').next().unwrap_or_default())
    {
        fail("X-Amz-Date is not YYYYMMDDTHHMMSSZ on the credential scope's date");
    }
    let expires_secs = required("X-Amz-Expires")
        .parse::<u64>()
        .unwrap_or_else(|_| fail("X-Amz-Expires is not a whole number of seconds"));
    let signed_headers: Vec<String> = required("X-Amz-SignedHeaders")
        .split(';')
        .map(str::to_string)
        .collect();
    if signed_headers.iter().any(String::is_empty) {
        fail("X-Amz-SignedHeaders has an empty entry");
    }
    let signature = required("X-Amz-Signature");
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        fail("X-Amz-Signature is not 64 hex digits");
    }

    Presigned {
        method: method.to_ascii_uppercase(),
        host,
        path: path.to_string(),
        key,
        expires_secs,
        signed_headers,
        credential_scope,
        amz_date,
        signature: signature.to_ascii_lowercase(),
        query,
    }
}

/// Recomputes the SigV4 query-string signature from the URL, the given header
/// values for the signed headers (host is taken from the URL), and the secret
/// key; true when it equals X-Amz-Signature.
///
/// Header names are matched case-insensitively; a name given more than once
/// has its values joined with `,`. A signed header (other than `host`) that is
/// missing from `headers` makes this return false. Headers that are not
/// signed are ignored.
pub fn verify(p: &Presigned, headers: &[(&str, &str)], secret_access_key: &str) -> bool {
    match compute_signature(p, headers, secret_access_key) {
        Some(sig) => sig == p.signature.to_ascii_lowercase(),
        None => false,
    }
}

/// The canonical request `verify` signs, or `None` when a signed header is
/// missing. Handy in a failing test's message.
pub fn canonical_request(p: &Presigned, headers: &[(&str, &str)]) -> Option<String> {
    let mut query: Vec<(String, String)> = p
        .query
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (aws_encode(k), aws_encode(v)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut canonical_headers = String::new();
    for name in &p.signed_headers {
        let name = name.to_ascii_lowercase();
        let value = if name == "host" {
            p.host.clone()
        } else {
            let values: Vec<String> = headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(&name))
                .map(|(_, v)| normalize_header_value(v))
                .collect();
            if values.is_empty() {
                return None;
            }
            values.join(",")
        };
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let signed_headers = p
        .signed_headers
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(";");

    Some(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        p.method, p.path, canonical_query, canonical_headers, signed_headers, UNSIGNED_PAYLOAD
    ))
}

fn compute_signature(p: &Presigned, headers: &[(&str, &str)], secret: &str) -> Option<String> {
    let canonical = canonical_request(p, headers)?;
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        p.amz_date,
        p.credential_scope,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut scope = p.credential_scope.split('/');
    let (date, region, service) = (scope.next()?, scope.next()?, scope.next()?);
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    Some(hex::encode(hmac_sha256(
        &k_signing,
        string_to_sign.as_bytes(),
    )))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn aws_encode(s: &str) -> String {
    utf8_percent_encode(s, AWS_URI_ENCODE).to_string()
}

/// Trims the value and collapses runs of spaces to one, per SigV4.
fn normalize_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GET example of the S3 API reference page "Authenticating Requests:
    /// Using Query Parameters (AWS Signature Version 4)".
    const AWS_EXAMPLE_URL: &str = "https://examplebucket.s3.amazonaws.com/test.txt\
        ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z\
        &X-Amz-Expires=86400\
        &X-Amz-SignedHeaders=host\
        &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    const AWS_EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// Made with boto3 1.43 (`generate_presigned_url("put_object", ...)`,
    /// signature_version s3v4, us-east-1, path-style, endpoint
    /// http://127.0.0.1:5000, credentials testing/testing, ContentType
    /// image/png, ContentLength 1234, ExpiresIn 900).
    const BOTO3_PUT_URL: &str = "http://127.0.0.1:5000/test-bucket/uploads/photo.png\
        ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=testing%2F20261202%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20261202T205330Z&X-Amz-Expires=900\
        &X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost\
        &X-Amz-Signature=5d5d4ff60f336f46c1f717075324417758f92baf4151ba3df4d44de8c0477285";
    /// Same, for the key `uploads/a b+c/ü~x.png` (exercises path encoding).
    const BOTO3_PUT_URL_ODD_KEY: &str = "http://127.0.0.1:5000/test-bucket/uploads/a%20b%2Bc/%C3%BC~x.png\
        ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=testing%2F20261202%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20261202T205330Z&X-Amz-Expires=900\
        &X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost\
        &X-Amz-Signature=25e9e3f4164e1f38ec0041c49ee47bc967289ed6bd3960d19ae489064afb4b0b";
    const PUT_HEADERS: &[(&str, &str)] =
        &[("Content-Type", "image/png"), ("Content-Length", "1234")];

    #[test]
    fn aws_documented_example_verifies() {
        let p = parse("GET", AWS_EXAMPLE_URL);
        assert_eq!(p.host, "examplebucket.s3.amazonaws.com");
        assert_eq!(p.path, "/test.txt");
        assert_eq!(p.expires_secs, 86400);
        assert_eq!(p.signed_headers, ["host"]);
        assert_eq!(p.credential_scope, "20130524/us-east-1/s3/aws4_request");
        assert_eq!(p.amz_date, "20130524T000000Z");
        assert_eq!(p.access_key_id(), "AKIAIOSFODNN7EXAMPLE");
        // The documented canonical request hashes to this value.
        let canonical = canonical_request(&p, &[]).expect("a canonical request");
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
        );
        assert!(verify(&p, &[], AWS_EXAMPLE_SECRET));
    }

    #[test]
    fn tampered_signature_fails() {
        let mut p = parse("GET", AWS_EXAMPLE_URL);
        p.signature.replace_range(0..1, "b");
        assert!(!verify(&p, &[], AWS_EXAMPLE_SECRET));
        // A wrong secret, method or host fails too.
        let p = parse("GET", AWS_EXAMPLE_URL);
        assert!(!verify(&p, &[], "not-the-secret"));
        assert!(!verify(
            &parse("PUT", AWS_EXAMPLE_URL),
            &[],
            AWS_EXAMPLE_SECRET
        ));
        let moved = AWS_EXAMPLE_URL.replace("examplebucket.s3", "otherbucket.s3");
        assert!(!verify(&parse("GET", &moved), &[], AWS_EXAMPLE_SECRET));
    }

    #[test]
    fn boto3_put_url_verifies_with_its_headers() {
        let p = parse("put", BOTO3_PUT_URL);
        assert_eq!(p.method, "PUT");
        assert_eq!(p.host, "127.0.0.1:5000");
        assert_eq!(p.key, "uploads/photo.png");
        assert_eq!(p.signed_headers, ["content-length", "content-type", "host"]);
        assert!(verify(&p, PUT_HEADERS, "testing"));
        // Header names are case-insensitive; unsigned extras are ignored.
        let relaxed = [
            ("content-length", "1234"),
            ("x-extra", "1"),
            ("CONTENT-TYPE", " image/png "),
        ];
        assert!(verify(&p, &relaxed, "testing"));

        let odd = parse("PUT", BOTO3_PUT_URL_ODD_KEY);
        assert_eq!(odd.key, "uploads/a b+c/ü~x.png");
        assert_eq!(odd.path, "/test-bucket/uploads/a%20b%2Bc/%C3%BC~x.png");
        assert!(verify(&odd, PUT_HEADERS, "testing"));
    }

    #[test]
    fn changed_header_value_fails() {
        let p = parse("PUT", BOTO3_PUT_URL);
        assert!(!verify(
            &p,
            &[("Content-Type", "image/png"), ("Content-Length", "1235")],
            "testing"
        ));
        assert!(!verify(
            &p,
            &[("Content-Type", "image/jpeg"), ("Content-Length", "1234")],
            "testing"
        ));
    }

    #[test]
    fn missing_signed_header_fails() {
        let p = parse("PUT", BOTO3_PUT_URL);
        assert!(!verify(&p, &[("Content-Type", "image/png")], "testing"));
        assert!(canonical_request(&p, &[("Content-Type", "image/png")]).is_none());
    }

    #[test]
    fn default_port_is_dropped_from_host() {
        let url = AWS_EXAMPLE_URL.replace(".com/", ".com:443/");
        assert_eq!(parse("GET", &url).host, "examplebucket.s3.amazonaws.com");
        assert!(verify(&parse("GET", &url), &[], AWS_EXAMPLE_SECRET));
    }

    #[test]
    #[should_panic(expected = "missing X-Amz-Signature")]
    fn unsigned_url_panics() {
        parse(
            "GET",
            "http://127.0.0.1:5000/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=a%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
            &X-Amz-Date=20130524T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host",
        );
    }

    #[test]
    #[should_panic(expected = "malformed presigned URL")]
    fn non_url_panics() {
        parse("GET", "/b/k?X-Amz-Signature=00");
    }
}
