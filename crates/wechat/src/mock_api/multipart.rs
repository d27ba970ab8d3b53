//! A `multipart/form-data` body (RFC 7578 on RFC 2046 §5.1), split into its parts.
//!
//! Written by hand: the Rust crates that parse multipart are built for async servers
//! (multer needs futures and a stream of Bytes) or unmaintained (multipart); mock-api
//! holds the whole body already and needs only each part's name, filename, content type
//! and bytes. Done carefully: the boundary comes from the content type (quoted or not),
//! a delimiter counts only at the start of a line, a preamble and an epilogue are
//! skipped, and a body without its closing delimiter is refused.

/// One part of the form.
pub(super) struct Part<'a> {
    pub(super) name: String,
    pub(super) filename: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) data: &'a [u8],
}

/// The boundary of a `multipart/form-data` content type.
pub(super) fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let value = param(params, "boundary")?;
    // RFC 2046: 1 to 70 characters.
    (1..=70).contains(&value.len()).then_some(value)
}

/// The parts of `body`, whose delimiter is `--boundary`.
pub(super) fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, &'static str> {
    let delimiter = format!("--{boundary}").into_bytes();
    let line_delimiter = [b"\r\n".as_slice(), &delimiter].concat();
    // The first delimiter may open the body; later ones (and a first one after a
    // preamble) follow a line break.
    let mut at = if body.starts_with(&delimiter) {
        delimiter.len()
    } else {
        find(body, &line_delimiter, 0).ok_or("no boundary")? + line_delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = body.get(at..).ok_or("truncated")?;
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding (spaces, tabs) may follow a delimiter before its line break.
        let pad = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        if !rest.get(pad..).is_some_and(|r| r.starts_with(b"\r\n")) {
            return Err("a boundary line must end with CRLF");
        }
        let start = at + pad + 2;
        let end = find(body, &line_delimiter, start).ok_or("no closing boundary")?;
        parts.push(part(body.get(start..end).ok_or("truncated")?)?);
        at = end + line_delimiter.len();
    }
}

/// One part: its header lines, a blank line, its content.
fn part(raw: &[u8]) -> Result<Part<'_>, &'static str> {
    let (head, data) = if raw.starts_with(b"\r\n") {
        (&[][..], raw.get(2..).unwrap_or_default())
    } else {
        let end = find(raw, b"\r\n\r\n", 0).ok_or("a part without a blank line")?;
        (
            raw.get(..end).unwrap_or_default(),
            raw.get(end + 4..).unwrap_or_default(),
        )
    };
    let head = std::str::from_utf8(head).map_err(|_| "part headers are not UTF-8")?;
    let mut part = Part {
        name: String::new(),
        filename: None,
        content_type: None,
        data,
    };
    let mut disposed = false;
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or("a bad part header")?;
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            let (kind, params) = value.split_once(';').unwrap_or((value, ""));
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err("a part that is not form-data");
            }
            part.name = param(params, "name").ok_or("a part without a name")?;
            part.filename = param(params, "filename");
            disposed = true;
        } else if name.trim().eq_ignore_ascii_case("content-type") {
            part.content_type = Some(value.trim().to_string());
        }
    }
    if disposed {
        Ok(part)
    } else {
        Err("a part without content-disposition")
    }
}

/// The value of the parameter `name` in `; a=b; c="d;e"` (quotes and `\` escapes
/// undone), names compared without case.
fn param(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let key = rest.get(..eq)?.trim();
        let (value, after) = param_value(rest.get(eq + 1..)?.trim_start());
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = after;
    }
}

/// A token or a quoted string at the start of `text`, and what follows it.
fn param_value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(';').unwrap_or(text.len());
        let (value, after) = text.split_at(end);
        return (value.trim().to_string(), after);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, quoted.get(i + 1..).unwrap_or_default()),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    (value, "")
}

/// Where `needle` first occurs in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while let Some(rest) = hay.get(at..) {
        let offset = rest.iter().position(|b| *b == first)?;
        let candidate = at + offset;
        if hay.get(candidate..)?.starts_with(needle) {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_comes_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc123").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=x; BOUNDARY=\"a b;c\"").as_deref(),
            Some("a b;c")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/mixed; boundary=x"), None);
        assert_eq!(boundary("application/json; boundary=x"), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"\""), None);
    }

    #[test]
    fn parts_are_split_on_line_delimiters_only() {
        let body = b"preamble\r\n--XY\r\n\
            Content-Disposition: form-data; name=\"a\"\r\n\r\n\
            one --XY not a delimiter\r\n\
            --XY  \r\n\
            content-disposition: form-data; name=\"media\"; filename=\"p;q \\\"r\\\".jpg\"\r\n\
            Content-Type: image/jpeg\r\n\r\n\
            \x00\xff\r\n\r\nbytes\r\n\
            --XY--\r\nepilogue";
        let parts = parse(body, "XY").expect("parts");
        assert_eq!(parts.len(), 2);
        let first = parts.first().expect("a");
        assert_eq!(first.name, "a");
        assert_eq!(first.data, b"one --XY not a delimiter");
        assert_eq!(first.filename, None);
        let media = parts.get(1).expect("media");
        assert_eq!(media.name, "media");
        assert_eq!(media.filename.as_deref(), Some("p;q \"r\".jpg"));
        assert_eq!(media.content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(media.data, b"\x00\xff\r\n\r\nbytes");
    }

    #[test]
    fn a_broken_body_is_refused() {
        let open = b"--XY\r\ncontent-disposition: form-data; name=\"a\"\r\n\r\nno end";
        assert!(parse(open, "XY").is_err());
        assert!(parse(b"nothing here", "XY").is_err());
        let no_name = b"--XY\r\ncontent-disposition: form-data\r\n\r\nx\r\n--XY--";
        assert!(parse(no_name, "XY").is_err());
        let not_form = b"--XY\r\ncontent-disposition: attachment; name=a\r\n\r\nx\r\n--XY--";
        assert!(parse(not_form, "XY").is_err());
        assert_eq!(parse(b"--XY--\r\n", "XY").map(|p| p.len()), Ok(0));
    }
}
