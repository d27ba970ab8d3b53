//! The XML of a pushed message, read just far enough for the gate: the root's
//! children and their text (`Encrypt`, `MsgId`, …), and the CDATA the gate writes.
//! Not a general XML parser, and strict about what it accepts.

use std::borrow::Cow;
use std::fmt;

/// Why an element could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementError {
    /// The body is not UTF-8, the element is not closed, its CDATA is not closed,
    /// or its text holds markup.
    Malformed,
    /// The element appears more than once.
    Repeated,
}

impl fmt::Display for ElementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElementError::Malformed => "is malformed",
            ElementError::Repeated => "appears more than once",
        })
    }
}

/// The direct children of a message's root element (`<xml>…</xml>`), in order:
/// each name with its text (CDATA sections and plain text, the whitespace around
/// them ignored), or `None` for a child that holds elements of its own. Markup inside
/// CDATA or comments is text, never an element: a user who writes `<Encrypt>` in a
/// message cannot add one.
pub struct Fields<'b> {
    root: &'b str,
    children: Vec<(&'b str, Option<Cow<'b, str>>)>,
}

impl<'b> Fields<'b> {
    /// The root element's name (`xml` in every WeChat message).
    pub fn root(&self) -> &'b str {
        self.root
    }

    /// The children: names and text borrowed from the body (a text is copied only
    /// when it comes in several pieces).
    pub fn into_children(self) -> Vec<(&'b str, Option<Cow<'b, str>>)> {
        self.children
    }

    /// The text of the one child called `name`; `Ok(None)` if there is none.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ElementError> {
        let mut found = self.children.iter().filter(|(n, _)| *n == name);
        let Some((_, value)) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(ElementError::Repeated);
        }
        value.as_deref().map(Some).ok_or(ElementError::Malformed)
    }
}

/// Reads the root element's children. The body must be one element (after an
/// optional XML declaration and comments), closed, and UTF-8.
pub fn fields(body: &[u8]) -> Result<Fields<'_>, ElementError> {
    let text = std::str::from_utf8(body).map_err(|_| ElementError::Malformed)?;
    let mut r = Reader { rest: text };
    r.skip_prolog()?;
    let (root, self_closed) = r.open_tag()?.ok_or(ElementError::Malformed)?;
    // A WeChat message has a dozen fields or so: one allocation for most.
    let mut children = Vec::with_capacity(16);
    if !self_closed {
        loop {
            r.skip_space_and_comments()?;
            if r.close_tag(root)? {
                break;
            }
            let (name, self_closed) = r.open_tag()?.ok_or(ElementError::Malformed)?;
            let value = if self_closed {
                Some(Cow::Borrowed(""))
            } else {
                r.content(name)?
            };
            children.push((name, value));
        }
    }
    r.skip_space_and_comments()?;
    if !r.rest.is_empty() {
        return Err(ElementError::Malformed);
    }
    Ok(Fields { root, children })
}

/// The text of the root's child `<name>…</name>` (see [`Fields`]). `Ok(None)` when
/// the body has no such child.
pub fn element(body: &[u8], name: &str) -> Result<Option<String>, ElementError> {
    Ok(fields(body)?.get(name)?.map(str::to_string))
}

/// A cursor over the text; every step either advances or fails.
struct Reader<'b> {
    rest: &'b str,
}

impl<'b> Reader<'b> {
    fn eat(&mut self, prefix: &str) -> bool {
        match self.rest.strip_prefix(prefix) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    /// Skips up to and including `end` (ASCII).
    fn skip_past(&mut self, end: &str) -> Result<&'b str, ElementError> {
        let at = find(self.rest, end).ok_or(ElementError::Malformed)?;
        let skipped = self.rest.get(..at).ok_or(ElementError::Malformed)?;
        self.rest = self
            .rest
            .get(at + end.len()..)
            .ok_or(ElementError::Malformed)?;
        Ok(skipped)
    }

    fn skip_space_and_comments(&mut self) -> Result<(), ElementError> {
        loop {
            self.rest = trim_start(self.rest);
            if self.eat("<!--") {
                self.skip_past("-->")?;
            } else {
                return Ok(());
            }
        }
    }

    fn skip_prolog(&mut self) -> Result<(), ElementError> {
        self.rest = self.rest.strip_prefix('\u{feff}').unwrap_or(self.rest);
        self.skip_space_and_comments()?;
        if self.eat("<?") {
            self.skip_past("?>")?;
        }
        self.skip_space_and_comments()
    }

    /// `<name>` or `<name/>` (attributes allowed and ignored): the name and whether
    /// it closed itself. `None` if the next thing is not an opening tag.
    fn open_tag(&mut self) -> Result<Option<(&'b str, bool)>, ElementError> {
        let Some(after) = self.rest.strip_prefix('<') else {
            return Ok(None);
        };
        if after.starts_with(['/', '!', '?']) {
            return Ok(None);
        }
        self.rest = after;
        let tag = self.skip_past(">")?;
        let (tag, self_closed) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let name = name_of(tag);
        let not_in_a_name = |b: &u8| matches!(b, b'<' | b'&' | b'"' | b'\'' | b'=');
        if name.is_empty() || name.as_bytes().iter().any(not_in_a_name) {
            return Err(ElementError::Malformed);
        }
        Ok(Some((name, self_closed)))
    }

    /// Consumes `</name>` if it comes next.
    fn close_tag(&mut self, name: &str) -> Result<bool, ElementError> {
        let Some(after) = self.rest.strip_prefix("</") else {
            return Ok(false);
        };
        let after = after.strip_prefix(name).ok_or(ElementError::Malformed)?;
        let after = trim_start(after)
            .strip_prefix('>')
            .ok_or(ElementError::Malformed)?;
        self.rest = after;
        Ok(true)
    }

    /// Skips what is left of an element whose opening tag was just read, however
    /// deep, without recursion (a hostile body cannot exhaust the stack).
    fn skip_subtree(&mut self) -> Result<(), ElementError> {
        let mut depth = 1usize;
        while depth > 0 {
            let at = find(self.rest, "<").ok_or(ElementError::Malformed)?;
            self.rest = self.rest.get(at..).ok_or(ElementError::Malformed)?;
            if self.eat("<![CDATA[") {
                self.skip_past("]]>")?;
            } else if self.eat("<!--") {
                self.skip_past("-->")?;
            } else if self.eat("</") {
                self.skip_past(">")?;
                depth -= 1;
            } else if let Some((_, self_closed)) = self.open_tag()? {
                if !self_closed {
                    depth += 1;
                }
            } else {
                return Err(ElementError::Malformed);
            }
        }
        Ok(())
    }

    /// The content of `<name>` up to its closing tag: its text, or `None` when it
    /// holds elements (skipped whole, however deep). Borrowed from the body when it
    /// is one piece (one CDATA section or one run of plain text, as WeChat writes).
    fn content(&mut self, name: &str) -> Result<Option<Cow<'b, str>>, ElementError> {
        let mut text: Cow<'b, str> = Cow::Borrowed("");
        let mut nested = false;
        loop {
            let at = find(self.rest, "<").ok_or(ElementError::Malformed)?;
            let plain = self.rest.get(..at).ok_or(ElementError::Malformed)?;
            add(&mut text, trim(plain));
            self.rest = self.rest.get(at..).ok_or(ElementError::Malformed)?;
            if self.eat("<![CDATA[") {
                add(&mut text, self.skip_past("]]>")?);
            } else if self.eat("<!--") {
                self.skip_past("-->")?;
            } else if self.close_tag(name)? {
                return Ok((!nested).then_some(text));
            } else if let Some((_, self_closed)) = self.open_tag()? {
                nested = true;
                if !self_closed {
                    self.skip_subtree()?;
                }
            } else {
                return Err(ElementError::Malformed);
            }
        }
    }
}

// The reader's scanning, byte by byte: every delimiter it looks for is ASCII, and in
// Wasm (no SIMD memchr) a plain loop beats the standard library's string searcher,
// which is built anew for each search, and its char-by-char trimming. Each gives
// exactly what the standard library's does (tests below hold them to it).

/// Where `needle` (ASCII) first occurs in `hay`, as `hay.find(needle)`.
fn find(hay: &str, needle: &str) -> Option<usize> {
    let (&first, rest) = needle.as_bytes().split_first()?;
    let bytes = hay.as_bytes();
    let mut from = 0;
    loop {
        let at = from + bytes.get(from..)?.iter().position(|&b| b == first)?;
        if bytes.get(at + 1..)?.starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
}

/// An ASCII byte that `char::is_whitespace` calls whitespace (tab to CR, space).
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// `s.trim_start()`: ASCII whitespace skipped byte by byte, the rest (from a
/// non-ASCII character on) left to the standard library.
fn trim_start(s: &str) -> &str {
    let n = s.bytes().take_while(|&b| is_ascii_space(b)).count();
    let rest = s.get(n..).unwrap_or_default();
    match rest.as_bytes().first() {
        Some(&b) if !b.is_ascii() => rest.trim_start(),
        _ => rest,
    }
}

/// `s.trim_end()`, likewise.
fn trim_end(s: &str) -> &str {
    let n = s.bytes().rev().take_while(|&b| is_ascii_space(b)).count();
    let rest = s.get(..s.len() - n).unwrap_or_default();
    match rest.as_bytes().last() {
        Some(&b) if !b.is_ascii() => rest.trim_end(),
        _ => rest,
    }
}

/// `s.trim()`.
fn trim(s: &str) -> &str {
    trim_end(trim_start(s))
}

/// A tag's name: what comes before its first whitespace, as
/// `tag.split(char::is_whitespace).next()`.
fn name_of(tag: &str) -> &str {
    match tag.bytes().position(|b| is_ascii_space(b) || !b.is_ascii()) {
        None => tag,
        Some(at) => match tag.as_bytes().get(at) {
            Some(b) if b.is_ascii() => tag.get(..at).unwrap_or_default(),
            _ => tag.split(char::is_whitespace).next().unwrap_or_default(),
        },
    }
}

/// `piece` added to the end of `text`, which stays borrowed while it is one piece.
fn add<'b>(text: &mut Cow<'b, str>, piece: &'b str) {
    if text.is_empty() {
        *text = Cow::Borrowed(piece);
    } else if !piece.is_empty() {
        text.to_mut().push_str(piece);
    }
}

/// `text` inside CDATA; a `]]>` in it is split across two sections, as XML requires.
pub fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity rules, on XML bodies (`gate::message` applies them to both formats).
    fn retry_identity(body: &[u8]) -> Option<u64> {
        crate::message::Message::read(body, crate::message::Format::Xml)
            .ok()?
            .retry_identity()
    }

    fn el(body: &[u8], name: &str) -> Result<Option<String>, ElementError> {
        element(body, name)
    }

    fn some(s: &str) -> Result<Option<String>, ElementError> {
        Ok(Some(s.to_string()))
    }

    #[test]
    fn element_text_comes_from_cdata_or_plain_text_with_whitespace_around() {
        assert_eq!(el(b"<xml><A><![CDATA[x y]]></A></xml>", "A"), some("x y"));
        assert_eq!(el(b"<xml>\n  <A>\n 12 \n</A>\n</xml>", "A"), some("12"));
        assert_eq!(el(b"<xml><B>1</B></xml>", "A"), Ok(None));
        assert_eq!(el(b"<xml><A></A><B/></xml>", "A"), some(""));
        assert_eq!(el(b"<xml><A></A><B/></xml>", "B"), some(""));
        assert_eq!(
            el(
                b"<?xml version=\"1.0\"?>\n<!-- c --><xml><A>1</A></xml>\n",
                "A"
            ),
            some("1")
        );
        assert_eq!(
            el(b"<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A></xml>", "A"),
            some("a]]>b"),
            "a CDATA split around ]]> reads back whole"
        );
    }

    #[test]
    fn repeated_unclosed_or_nested_elements_are_errors() {
        assert_eq!(
            el(b"<xml><A>1</A><A>2</A></xml>", "A"),
            Err(ElementError::Repeated)
        );
        assert_eq!(el(b"<xml><A>1</xml>", "A"), Err(ElementError::Malformed));
        assert_eq!(
            el(b"<xml><A><![CDATA[1</A></xml>", "A"),
            Err(ElementError::Malformed)
        );
        assert_eq!(
            el(b"<xml><A><B>1</B></A></xml>", "A"),
            Err(ElementError::Malformed)
        );
        assert_eq!(
            el(b"<xml><A>\xff</A></xml>", "A"),
            Err(ElementError::Malformed)
        );
        assert_eq!(el(b"<xml><A>1</A>", "A"), Err(ElementError::Malformed));
        assert_eq!(
            el(b"<xml><A>1</A></xml>trailing", "A"),
            Err(ElementError::Malformed)
        );
        assert_eq!(el(b"", "A"), Err(ElementError::Malformed));
        assert_eq!(el(b"not xml", "A"), Err(ElementError::Malformed));
    }

    #[test]
    fn only_the_roots_own_children_count() {
        // Markup a user typed (inside CDATA), comments and grandchildren are not fields.
        let body = b"<xml><Content><![CDATA[how do I use <Encrypt>x</Encrypt>?]]></Content>\
            <!-- <Encrypt>c</Encrypt> --><Info><Encrypt>g</Encrypt></Info><Encrypt>real</Encrypt></xml>";
        assert_eq!(el(body, "Encrypt"), some("real"));
        assert_eq!(
            el(body, "Content"),
            some("how do I use <Encrypt>x</Encrypt>?")
        );
        assert_eq!(el(body, "Info"), Err(ElementError::Malformed));
    }

    #[test]
    fn an_element_name_is_not_matched_inside_a_longer_one() {
        let body = b"<xml><EventKey>k</EventKey><Event>subscribe</Event></xml>";
        assert_eq!(el(body, "Event"), some("subscribe"));
        assert_eq!(el(body, "EventKey"), some("k"));
    }

    #[test]
    fn the_byte_scanning_gives_what_the_standard_library_does() {
        let samples = [
            "",
            " ",
            "\t\n\x0b\x0c\r ",
            "a",
            " a ",
            "\u{3000}a\u{3000}",
            " \u{a0} x \u{85}",
            "\u{2028}",
            "x\u{2009}",
            " 你好 ",
            "\r\n<![CDATA[ x ]]>\n",
            "\u{1c}a\u{1f}",
            "é",
            " é",
            "é ",
            "a]]]>b",
            "--->",
            "<!-- a -- -->",
            "??>",
            ">",
            "a b",
            "a\u{3000}b",
            "名 x",
            "a\tb",
            "\u{feff}a",
        ];
        for s in samples {
            assert_eq!(trim_start(s), s.trim_start(), "{s:?}");
            assert_eq!(trim_end(s), s.trim_end(), "{s:?}");
            assert_eq!(trim(s), s.trim(), "{s:?}");
            assert_eq!(
                name_of(s),
                s.split(char::is_whitespace).next().unwrap_or_default(),
                "{s:?}"
            );
            for needle in [">", "<", "]]>", "-->", "?>"] {
                assert_eq!(find(s, needle), s.find(needle), "{s:?} {needle:?}");
            }
        }
    }

    #[test]
    fn deeply_nested_or_hostile_input_never_panics() {
        let mut deep = String::from("<xml><A>");
        for _ in 0..100_000 {
            deep.push_str("<B>");
        }
        for _ in 0..100_000 {
            deep.push_str("</B>");
        }
        deep.push_str("</A><C>1</C></xml>");
        assert_eq!(el(deep.as_bytes(), "C"), some("1"));
        for junk in [
            &b"<"[..],
            b"<xml",
            b"<xml>",
            b"<xml></",
            b"<xml><A",
            b"<xml><A>",
            b"<xml><!--",
            b"<xml><A><![CDATA[",
            b"<xml></yml>",
            b"<>",
            b"<xml><=/></xml>",
            b"<?",
            b"\xef\xbb\xbf<xml/>",
        ] {
            let _ = el(junk, "A");
        }
    }

    fn text_message(to: &str, msg_id: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
             <CreateTime>1714036504</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[hi]]></Content><MsgId>{msg_id}</MsgId></xml>"
        )
    }

    fn event(from: &str, created: &str, event: &str, key: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
             <CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
        )
    }

    #[test]
    fn a_message_is_identified_by_account_and_msg_id() {
        let a = retry_identity(text_message("gh_1", "1001").as_bytes());
        assert!(a.is_some());
        assert_eq!(a, retry_identity(text_message("gh_1", "1001").as_bytes()));
        assert_ne!(a, retry_identity(text_message("gh_1", "1002").as_bytes()));
        assert_ne!(a, retry_identity(text_message("gh_2", "1001").as_bytes()));
    }

    #[test]
    fn an_event_is_identified_by_sender_time_event_and_key() {
        let a = retry_identity(event("o1", "100", "CLICK", "k1").as_bytes());
        assert!(a.is_some());
        assert_eq!(
            a,
            retry_identity(event("o1", "100", "CLICK", "k1").as_bytes())
        );
        for other in [
            event("o2", "100", "CLICK", "k1"),
            event("o1", "101", "CLICK", "k1"),
            event("o1", "100", "VIEW", "k1"),
            event("o1", "100", "CLICK", "k2"),
        ] {
            assert_ne!(a, retry_identity(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn job_result_events_are_identified_by_their_msg_id() {
        let job = |id: &str| {
            format!(
                "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
                 <CreateTime>100</CreateTime><MsgType><![CDATA[event]]></MsgType>\
                 <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{id}</MsgID><Status><![CDATA[success]]></Status></xml>"
            )
        };
        let a = retry_identity(job("200163836").as_bytes());
        assert!(a.is_some());
        assert_ne!(a, retry_identity(job("200163840").as_bytes()));
    }

    #[test]
    fn a_body_without_an_identity_is_not_deduplicated() {
        assert_eq!(retry_identity(b""), None);
        assert_eq!(
            retry_identity(b"<xml><ToUserName>a</ToUserName></xml>"),
            None
        );
        assert_eq!(retry_identity(b"not xml at all"), None);
        assert_eq!(
            retry_identity(
                b"<xml><ToUserName>a</ToUserName><FromUserName>o</FromUserName>\
                  <CreateTime>1</CreateTime><MsgId>1</MsgId><MsgId>1</MsgId></xml>"
            ),
            None,
            "a repeated MsgId identifies nothing (not even as an event)"
        );
    }
}
