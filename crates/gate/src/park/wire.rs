//! The byte layout the parking area's values are written in: big-endian integers
//! and length-prefixed fields after a two-byte tag and a version byte. Reading
//! never panics: every read checks what is left and a value that ends early, runs
//! on, or breaks a bound reads as `None`.

/// The version every value of this layout carries after its tag.
pub(super) const VERSION: u8 = 1;

/// Builds a value.
pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn new(tag: [u8; 2], capacity: usize) -> Writer {
        let mut bytes = Vec::with_capacity(capacity.saturating_add(3));
        bytes.extend_from_slice(&tag);
        bytes.push(VERSION);
        Writer(bytes)
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    /// A field of at most `u16::MAX` bytes, its length first (the caller bounds it).
    pub(super) fn short(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend(v.iter().take(usize::from(len)));
    }

    /// A field of at most `u32::MAX` bytes, its length first (the caller bounds it).
    pub(super) fn long(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend(v.iter().take(len as usize));
    }

    pub(super) fn done(self) -> Vec<u8> {
        self.0
    }
}

/// Reads a value from its start.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader past the tag and the version, if `value` starts with both.
    pub(super) fn open(value: &'a [u8], tag: [u8; 2]) -> Option<Reader<'a>> {
        let mut r = Reader { rest: value };
        (r.take(2)? == tag && r.u8()? == VERSION).then_some(r)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.rest.get(..n)?;
        self.rest = self.rest.get(n..)?;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(u8::from_be_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    /// A [`Writer::short`] field of at most `max` bytes.
    pub(super) fn short(&mut self, max: usize) -> Option<&'a [u8]> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        (len <= max).then_some(())?;
        self.take(len)
    }

    /// A [`Writer::short`] field of at most `max` bytes, UTF-8.
    pub(super) fn text(&mut self, max: usize) -> Option<String> {
        std::str::from_utf8(self.short(max)?)
            .ok()
            .map(str::to_string)
    }

    /// A [`Writer::long`] field of at most `max` bytes.
    pub(super) fn long(&mut self, max: usize) -> Option<&'a [u8]> {
        let len = usize::try_from(u32::from_be_bytes(self.array()?)).ok()?;
        (len <= max).then_some(())?;
        self.take(len)
    }

    /// Nothing is left: a value that runs on is not this layout.
    pub(super) fn end(self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_in_order_and_the_value_must_end_there() {
        let mut w = Writer::new(*b"WT", 0);
        w.u8(7);
        w.u32(0xdead_beef);
        w.u64(u64::MAX - 1);
        w.short(b"short");
        w.long(b"long");
        let bytes = w.done();
        let mut r = Reader::open(&bytes, *b"WT").expect("tag");
        assert_eq!(r.u8(), Some(7));
        assert_eq!(r.u32(), Some(0xdead_beef));
        assert_eq!(r.u64(), Some(u64::MAX - 1));
        assert_eq!(r.text(5).as_deref(), Some("short"));
        assert_eq!(r.long(4), Some(&b"long"[..]));
        assert_eq!(r.end(), Some(()));
        // Another tag, another version, a run-on value: not this layout.
        assert!(Reader::open(&bytes, *b"WX").is_none());
        let mut newer = bytes.clone();
        newer[2] = VERSION + 1;
        assert!(Reader::open(&newer, *b"WT").is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        let mut r = Reader::open(&longer, *b"WT").expect("tag");
        let _ = (r.u8(), r.u32(), r.u64(), r.short(5), r.long(4));
        assert_eq!(r.end(), None);
    }

    #[test]
    fn a_field_over_its_bound_or_past_the_end_reads_as_none() {
        let mut w = Writer::new(*b"WT", 0);
        w.short(b"twelve bytes");
        let bytes = w.done();
        assert_eq!(Reader::open(&bytes, *b"WT").expect("tag").short(11), None);
        assert!(Reader::open(&bytes, *b"WT")
            .expect("tag")
            .short(12)
            .is_some());
        for cut in 0..bytes.len() {
            let read = Reader::open(&bytes[..cut], *b"WT").and_then(|mut r| r.short(12));
            assert_eq!(read, None, "cut at {cut}");
        }
        let mut w = Writer::new(*b"WT", 0);
        w.u32(u32::MAX);
        let huge = w.done();
        assert_eq!(
            Reader::open(&huge, *b"WT").expect("tag").long(usize::MAX),
            None
        );
    }
}
