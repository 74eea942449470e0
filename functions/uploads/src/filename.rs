//! User-supplied file names, made safe to store and to hand back in a download header.
//! Hand-written: the rules are short and specific to how we use the name.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub const MAX_BYTES: usize = 255;

/// Keeps the last path segment, drops control and reserved characters and leading dots,
/// collapses whitespace, and caps the length. Unicode letters are kept. Never empty.
pub fn sanitize(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = collapsed
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    let mut name = String::new();
    for c in trimmed.chars() {
        if name.len() + c.len_utf8() > MAX_BYTES {
            break;
        }
        name.push(c);
    }
    if name.is_empty() { "file".into() } else { name }
}

/// `attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266).
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_reserved_characters_are_removed() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("..\\..\\windows\\system.ini"), "system.ini");
        assert_eq!(sanitize("  ..hidden  "), "hidden");
        assert_eq!(sanitize("a<b>c:d\"e|f?g*h.txt"), "abcdefgh.txt");
        assert_eq!(sanitize("line\nbreak\u{0}.txt"), "linebreak.txt");
        assert_eq!(sanitize("evil\u{202e}gnp.exe"), "evilgnp.exe");
        assert_eq!(sanitize("../"), "file");
        assert_eq!(sanitize(""), "file");
    }

    #[test]
    fn unicode_names_are_kept_and_capped() {
        assert_eq!(sanitize("résumé 2024.pdf"), "résumé 2024.pdf");
        assert_eq!(sanitize("写真.png"), "写真.png");
        let long = "é".repeat(300);
        let s = sanitize(&long);
        assert!(s.len() <= MAX_BYTES && s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn the_download_header_has_an_ascii_fallback() {
        let h = content_disposition("résumé \"v2\".pdf");
        assert!(
            h.starts_with(
                "attachment; filename=\"r_sum_ v2.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9"
            ),
            "{h}"
        );
    }
}
