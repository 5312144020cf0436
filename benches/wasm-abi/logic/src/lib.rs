//! What every variant shares: the batch encoding of docs/WASM-ABI.md (header + Kafka v2
//! records), a checked parser over it, the two filter checks, and a data generator.
//! The guests and the native baseline call the same functions, so they do the same work.

#![forbid(unsafe_code)]

pub const HEADER_LEN: usize = 28;
pub const KEEP: u8 = 0;
pub const DROP: u8 = 1;

/// Which check the filter applies (chosen once, by the `check` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Keep a record whose value's first byte is even (trivial: call and parse costs dominate).
    Even,
    /// Keep a record whose value contains `"vip"` (a scan of the whole value).
    Vip,
}

impl Check {
    pub fn from_param(v: &str) -> Option<Self> {
        match v {
            "even" => Some(Check::Even),
            "vip" => Some(Check::Vip),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Check::Even => "even",
            Check::Vip => "vip",
        }
    }
    #[inline]
    pub fn keep(self, value: Option<&[u8]>) -> bool {
        match (self, value) {
            (_, None) => false,
            (Check::Even, Some(v)) => v.first().is_some_and(|b| b % 2 == 0),
            (Check::Vip, Some(v)) => v.windows(5).any(|w| w == b"\"vip\""),
        }
    }
}

/// Parses a parameter block (`u32 count, count x {u32 klen, key, u32 vlen, value}`) for `check`.
pub fn check_from_param_block(buf: &[u8]) -> Result<Check, &'static str> {
    let mut r = Reader { buf, pos: 0 };
    let n = r.u32()?;
    let mut check = None;
    for _ in 0..n {
        let kl = r.u32()? as usize;
        let k = r.take(kl)?;
        let vl = r.u32()? as usize;
        let v = r.take(vl)?;
        if k == b"check" {
            let v = core::str::from_utf8(v).map_err(|_| "check: not UTF-8")?;
            check = Some(Check::from_param(v).ok_or("check: want even or vip")?);
        }
    }
    check.ok_or("missing parameter: check")
}

pub fn param_block(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        b.extend_from_slice(&(k.len() as u32).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(&(v.len() as u32).to_le_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b
}

/// One record, borrowed from the batch.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub attributes: i8,
    pub timestamp: i64,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The raw header section (count already checked); see [`RecordView::headers`].
    headers_raw: &'a [u8],
    pub header_count: u32,
}

impl<'a> RecordView<'a> {
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            r: Reader {
                buf: self.headers_raw,
                pos: 0,
            },
            left: self.header_count,
        }
    }
}

pub struct HeaderIter<'a> {
    r: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Already validated by the batch parser.
        let k = self.r.bytes().ok()?.unwrap_or(&[]);
        let v = self.r.bytes().ok()?;
        Some((k, v))
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BatchHeader {
    pub record_count: u32,
    pub partition: u32,
    pub partition_count: u32,
    pub base_offset: i64,
    pub base_timestamp: i64,
}

/// A checked, in-place reader of one input batch.
pub struct Batch<'a> {
    pub header: BatchHeader,
    r: Reader<'a>,
    left: u32,
}

impl<'a> Batch<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, &'static str> {
        let mut r = Reader { buf, pos: 0 };
        let header = BatchHeader {
            record_count: r.u32()?,
            partition: r.u32()?,
            partition_count: r.u32()?,
            base_offset: r.i64()?,
            base_timestamp: r.i64()?,
        };
        Ok(Batch {
            header,
            r,
            left: header.record_count,
        })
    }

    /// The next record, or `None` at the end; an error if a length runs past the buffer.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<RecordView<'a>>, &'static str> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let len = self.r.varint()?;
        if len < 0 {
            return Err("negative record length");
        }
        let body = self.r.take(len as usize)?;
        let mut b = Reader { buf: body, pos: 0 };
        let attributes = b.u8()? as i8;
        let ts_delta = b.varlong()?;
        let off_delta = b.varint()?;
        let key = b.bytes()?;
        let value = b.bytes()?;
        let hc = b.varint()?;
        if hc < 0 {
            return Err("negative header count");
        }
        let hstart = b.pos;
        for _ in 0..hc {
            if b.bytes()?.is_none() {
                return Err("null header key");
            }
            b.bytes()?;
        }
        if b.pos != body.len() {
            return Err("record length mismatch");
        }
        Ok(Some(RecordView {
            attributes,
            timestamp: self.header.base_timestamp.wrapping_add(ts_delta),
            offset: self.header.base_offset.wrapping_add(off_delta as i64),
            key,
            value,
            headers_raw: &body[hstart..],
            header_count: hc as u32,
        }))
    }
}

/// The filter over one encoded batch: appends the output of docs/WASM-ABI.md (u32 count,
/// one u8 tag per record) to `out`. This is the whole guest; the native baseline calls it too.
#[inline]
pub fn filter_batch(check: Check, input: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut batch = Batch::parse(input)?;
    let n = batch.header.record_count;
    out.reserve(4 + n as usize);
    out.extend_from_slice(&n.to_le_bytes());
    while let Some(rec) = batch.next_record()? {
        out.push(if check.keep(rec.value) { KEEP } else { DROP });
    }
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("overflow")?;
        let s = self.buf.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(s)
    }
    #[inline]
    fn u8(&mut self) -> Result<u8, &'static str> {
        let b = *self.buf.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "truncated")?,
        ))
    }
    fn i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "truncated")?,
        ))
    }
    #[inline]
    fn uvarlong(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err("varint too long");
            }
        }
    }
    #[inline]
    fn varlong(&mut self) -> Result<i64, &'static str> {
        let u = self.uvarlong()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    #[inline]
    fn varint(&mut self) -> Result<i32, &'static str> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| "varint out of range")
    }
    /// A varint length (-1 = null) and that many bytes.
    #[inline]
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, &'static str> {
        let n = self.varint()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err("negative length");
        }
        self.take(n as usize).map(Some)
    }
}

// ---- encoding (host side, data generation) ----

fn put_uvarlong(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarlong(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// A tiny fixed-seed PRNG (xorshift64*), so every run sees the same records.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Encodes `n` records (16-byte key, `value_len`-byte printable value, no headers; about
/// one in five values contains `"vip"`) as one input batch.
pub fn gen_batch(rng: &mut Rng, base_offset: i64, n: u32, value_len: usize) -> Vec<u8> {
    let base_ts = 1_764_000_000_000i64 + base_offset;
    let mut out = Vec::with_capacity(HEADER_LEN + n as usize * (value_len + 32));
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&base_ts.to_le_bytes());
    let mut body = Vec::with_capacity(value_len + 32);
    for i in 0..n {
        let mut key = [0u8; 16];
        for k in key.iter_mut() {
            *k = b'a' + (rng.next_u64() % 26) as u8;
        }
        let mut value = vec![0u8; value_len];
        for v in value.iter_mut() {
            *v = b' ' + (rng.next_u64() % 95) as u8;
        }
        // Avoid accidental matches, then plant one in ~20% of values.
        for v in value.iter_mut() {
            if *v == b'"' {
                *v = b'\'';
            }
        }
        if rng.next_u64() % 5 == 0 && value_len >= 6 {
            let at = 1 + (rng.next_u64() as usize % (value_len - 5));
            value[at..at + 5].copy_from_slice(b"\"vip\"");
        }
        body.clear();
        body.push(0); // attributes
        put_varlong(&mut body, i64::from(i)); // timestamp delta
        put_varlong(&mut body, i64::from(i)); // offset delta
        put_bytes(&mut body, Some(&key));
        put_bytes(&mut body, Some(&value));
        put_varlong(&mut body, 0); // header count
        put_varlong(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn roundtrip() {
        let mut rng = Rng::new(7);
        let b = gen_batch(&mut rng, 100, 1024, 64);
        let mut batch = Batch::parse(&b).unwrap();
        let mut n = 0;
        let mut vip = 0;
        while let Some(r) = batch.next_record().unwrap() {
            assert_eq!(r.offset, 100 + n);
            assert_eq!(r.key.unwrap().len(), 16);
            assert_eq!(r.value.unwrap().len(), 64);
            assert_eq!(r.headers().count(), 0);
            vip += Check::Vip.keep(r.value) as u32;
            n += 1;
        }
        assert_eq!(n, 1024);
        assert!(vip > 150 && vip < 260, "{vip}");
        let mut out = Vec::new();
        filter_batch(Check::Even, &b, &mut out).unwrap();
        assert_eq!(out.len(), 4 + 1024);
    }
}
