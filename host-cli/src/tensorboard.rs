//! TensorBoard event files, written by hand: TFRecord framing around a few protobuf fields.
//!
//! An event file is a sequence of TFRecords, each holding one serialized `tensorboard.Event`:
//! ```text
//! record = len: u64 LE · masked_crc32c(len bytes): u32 LE · data: [u8; len] · masked_crc32c(data): u32 LE
//! Event   { 1 wall_time: double, 2 step: int64, 3 file_version: string, 5 summary: Summary }
//! Summary { 1 value: repeated Value }
//! Value   { 1 tag: string, 2 simple_value: float, 4 image: Image }
//! Image   { 1 height: int32, 2 width: int32, 3 colorspace: int32, 4 encoded_image_string: bytes }
//! ```
//! Only the fields above are written, so no protobuf crate is needed. The field numbers were checked
//! against the descriptors of TensorBoard 2.21's `tensorboard/compat/proto/{event,summary}_pb2.py`.
//!
//! ```ignore
//! # fn demo() -> std::io::Result<()> {
//! let mut tb = EventWriter::create(std::path::Path::new("runs/exp1"))?;
//! for step in 0..3 {
//!     tb.scalar("loss/train", step, 1.0 / (step + 1) as f32)?;
//! }
//! tb.flush()?; // so a running TensorBoard sees the events now
//! # Ok(()) }
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// First event of every file; TensorBoard reads the version from it.
const FILE_VERSION: &str = "brain.Event:2";

/// `Summary.Image.colorspace` for RGB (1 = grayscale, 2 = grayscale + alpha, 3 = RGB, 4 = RGBA).
const COLORSPACE_RGB: u64 = 3;

/// Writes scalar and image summaries to one TensorBoard event file.
///
/// Writes are buffered: call [`EventWriter::flush`] (e.g. at the end of each epoch) so that a running
/// TensorBoard sees them. Dropping the writer flushes too, but then a write error is lost.
pub struct EventWriter {
    /// Full path of the event file.
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Create `dir` if needed and `dir/events.out.tfevents.<unix secs>.<hostname>`; writes the
    /// file_version event.
    ///
    /// The file is never overwritten: if that name is taken (two writers in the same second), `.1`,
    /// `.2`, ... is appended, which TensorBoard still reads as an event file.
    ///
    /// # Errors
    /// Any I/O error from creating the directory or the file, or from writing the first event.
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let base = format!("events.out.tfevents.{secs}.{}", hostname());
        let (path, file) = create_new_numbered(dir, &base)?;
        let mut w = EventWriter { path, out: BufWriter::new(file) };
        let mut event = Vec::new();
        put_event_header(&mut event, 0);
        put_len_field(&mut event, 3, FILE_VERSION.as_bytes());
        w.write_record(&event)?;
        Ok(w)
    }

    /// Append a scalar summary `tag = value` at `step`.
    ///
    /// # Errors
    /// Any I/O error from writing to the file.
    pub fn scalar(&mut self, tag: &str, step: i64, value: f32) -> io::Result<()> {
        let mut val = Vec::with_capacity(tag.len() + 8);
        put_len_field(&mut val, 1, tag.as_bytes());
        put_key(&mut val, 2, WireType::Fixed32);
        val.extend_from_slice(&value.to_le_bytes());
        self.write_summary(step, &val)
    }

    /// A PNG image summary (RGB). `png` is the whole encoded file; `width` and `height` are its size
    /// in pixels, which TensorBoard shows without decoding the image.
    ///
    /// # Errors
    /// `InvalidInput` if `width` or `height` exceeds `i32::MAX` (the proto's type); otherwise any I/O
    /// error from writing to the file.
    pub fn image(&mut self, tag: &str, step: i64, png: &[u8], width: u32, height: u32) -> io::Result<()> {
        if i32::try_from(width.max(height)).is_err() {
            let msg = format!("image {width}x{height} is larger than the int32 fields of Summary.Image");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        let mut img = Vec::with_capacity(png.len() + 24);
        put_varint_field(&mut img, 1, u64::from(height));
        put_varint_field(&mut img, 2, u64::from(width));
        put_varint_field(&mut img, 3, COLORSPACE_RGB);
        put_len_field(&mut img, 4, png);
        let mut val = Vec::with_capacity(img.len() + tag.len() + 8);
        put_len_field(&mut val, 1, tag.as_bytes());
        put_len_field(&mut val, 4, &img);
        self.write_summary(step, &val)
    }

    /// Push buffered events to the file.
    ///
    /// # Errors
    /// Any I/O error from writing to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Path of the event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wrap one serialized `Summary.Value` in a Summary and an Event, and write it.
    fn write_summary(&mut self, step: i64, value: &[u8]) -> io::Result<()> {
        let mut summary = Vec::with_capacity(value.len() + 6);
        put_len_field(&mut summary, 1, value);
        let mut event = Vec::with_capacity(summary.len() + 26);
        put_event_header(&mut event, step);
        put_len_field(&mut event, 5, &summary);
        self.write_record(&event)
    }

    /// Write `data` as one TFRecord.
    fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc32c(data).to_le_bytes())
    }
}

/// Create `dir/base`, or `dir/base.1`, `dir/base.2`, ... if taken, without truncating anything.
fn create_new_numbered(dir: &Path, base: &str) -> io::Result<(PathBuf, File)> {
    let mut n = 0u32;
    loop {
        let name = if n == 0 { base.to_owned() } else { format!("{base}.{n}") };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// This machine's name for the file name: `/etc/hostname`, else `$HOSTNAME`, else "localhost".
/// Characters outside `[A-Za-z0-9._-]` are dropped so the name stays one path component.
fn hostname() -> String {
    let from_file = fs::read_to_string("/etc/hostname").ok();
    let raw = from_file.or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_default();
    let clean: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).collect();
    if clean.is_empty() { "localhost".to_owned() } else { clean }
}

// ---- protobuf encoding (only what Event needs) ----
// reference: https://protobuf.dev/programming-guides/encoding/

/// Protobuf wire types used here.
#[derive(Clone, Copy)]
enum WireType {
    Varint = 0,
    Fixed64 = 1,
    Len = 2,
    Fixed32 = 5,
}

/// Base-128 varint, least significant group first.
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Field key: `(field << 3) | wire type`.
fn put_key(buf: &mut Vec<u8>, field: u32, wire: WireType) {
    put_varint(buf, (u64::from(field) << 3) | wire as u64);
}

/// A varint field (int32/int64 store negatives as their 64-bit two's complement).
fn put_varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_key(buf, field, WireType::Varint);
    put_varint(buf, v);
}

/// A length-delimited field: string, bytes or embedded message.
fn put_len_field(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_key(buf, field, WireType::Len);
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// Event fields 1 (wall_time, seconds since the Unix epoch) and 2 (step).
fn put_event_header(buf: &mut Vec<u8>, step: i64) {
    let wall_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    put_key(buf, 1, WireType::Fixed64);
    buf.extend_from_slice(&wall_time.to_le_bytes());
    put_varint_field(buf, 2, step as u64);
}

// ---- CRC32C ----

/// CRC32C (Castagnoli) of `data`: regkern-core's, which checksums checkpoints too.
/// reference: RFC 3720 (iSCSI) section 12.1; the polynomial TFRecord uses.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = regkern_core::checkpoint::Crc32c::default();
    crc.update(data);
    crc.finish()
}

/// The masked CRC TFRecord stores: `((crc >> 15) | (crc << 17)) + 0xa282ead8`, i.e. rotate right
/// by 15, then add a constant (wrapping).
/// reference: tensorflow/tsl/lib/hash/crc32c.h `Mask` (kMaskDelta = 0xa282ead8).
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field as decoded by the test reader.
    #[derive(Debug, PartialEq)]
    enum Field<'a> {
        Varint(u64),
        Fixed64(u64),
        Len(&'a [u8]),
        Fixed32(u32),
    }

    fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = buf[*pos];
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint longer than 10 bytes at {pos}");
    }

    /// Decode one message into (field number, value) pairs, in order.
    fn decode(buf: &[u8]) -> Vec<(u32, Field<'_>)> {
        let mut pos = 0;
        let mut fields = Vec::new();
        while pos < buf.len() {
            let key = read_varint(buf, &mut pos);
            let field = match key & 7 {
                0 => Field::Varint(read_varint(buf, &mut pos)),
                1 => {
                    pos += 8;
                    Field::Fixed64(u64::from_le_bytes(buf[pos - 8..pos].try_into().unwrap()))
                }
                2 => {
                    let len = read_varint(buf, &mut pos) as usize;
                    pos += len;
                    Field::Len(&buf[pos - len..pos])
                }
                5 => {
                    pos += 4;
                    Field::Fixed32(u32::from_le_bytes(buf[pos - 4..pos].try_into().unwrap()))
                }
                w => panic!("unexpected wire type {w} at {pos}"),
            };
            fields.push(((key >> 3) as u32, field));
        }
        fields
    }

    /// Split a TFRecord file into records, checking both masked CRCs of each.
    fn read_records(file: &[u8]) -> Vec<&[u8]> {
        let mut records = Vec::new();
        let mut pos = 0;
        while pos < file.len() {
            let len_bytes = &file[pos..pos + 8];
            let len_crc = u32::from_le_bytes(file[pos + 8..pos + 12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc32c(len_bytes), "length CRC of record at byte {pos}");
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let data = &file[pos + 12..pos + 12 + len];
            let data_crc = u32::from_le_bytes(file[pos + 12 + len..pos + 16 + len].try_into().unwrap());
            assert_eq!(data_crc, masked_crc32c(data), "data CRC of record at byte {pos}");
            records.push(data);
            pos += 16 + len;
        }
        records
    }

    /// A fresh, empty directory under the system temp dir.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("regkern-tb-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn crc32c_matches_known_vectors() {
        // reference: RFC 3720 appendix B.4 (32 zero bytes, 32 0xFF bytes) and the "123456789" check value.
        let cases: [(&[u8], u32); 4] = [
            (b"", 0x0000_0000),
            (b"123456789", 0xE306_9283),
            (&[0u8; 32], 0x8A91_36AA),
            (&[0xFFu8; 32], 0x62A8_AB43),
        ];
        for (data, want) in cases {
            let got = crc32c(data);
            assert_eq!(got, want, "crc32c of {} bytes: got {got:#010x}, want {want:#010x}", data.len());
        }
    }

    #[test]
    fn masked_crc_rotates_then_adds_the_delta() {
        // crc32c("123456789") = 0xE3069283; masked, per TensorBoard's own reader
        // (tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c): 0xC78AB0E5.
        let got = masked_crc32c(b"123456789");
        assert_eq!(got, 0xC78A_B0E5, "masked crc {got:#010x}");
    }

    #[test]
    fn varints_encode_like_protobuf() {
        // reference: protobuf encoding guide (150 -> 96 01) and int64 -1 -> ten bytes.
        let enc = |v: u64| {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            buf
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(150), [0x96, 0x01]);
        assert_eq!(enc(-1i64 as u64), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn written_file_parses_back() {
        let dir = temp_dir("parse");
        let png = [0x89, b'P', b'N', b'G', 1, 2, 3];
        let path = {
            let mut w = EventWriter::create(&dir).unwrap();
            w.scalar("loss/train", 1, 0.5).unwrap();
            w.scalar("loss/train", 300, -2.25).unwrap();
            w.image("pred", 7, &png, 640, 400).unwrap();
            w.path().to_owned()
        }; // dropped: flushed
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("events.out.tfevents."), "file name {name}");
        let file = fs::read(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();

        let records = read_records(&file);
        assert_eq!(records.len(), 4, "file_version + 2 scalars + 1 image");
        let events: Vec<_> = records.iter().map(|r| decode(r)).collect();
        for e in &events {
            let Field::Fixed64(bits) = e[0].1 else { panic!("wall_time first: {e:?}") };
            let wall_time = f64::from_bits(bits);
            assert!(wall_time > 1.6e9, "wall_time {wall_time} is not a recent Unix time");
        }
        assert_eq!(events[0][1..], [(2, Field::Varint(0)), (3, Field::Len(b"brain.Event:2"))]);

        // (step, tag, simple_value) of the scalar events.
        for (e, (step, value)) in events[1..3].iter().zip([(1u64, 0.5f32), (300, -2.25)]) {
            assert_eq!(e[1], (2, Field::Varint(step)));
            let (5, Field::Len(summary)) = e[2] else { panic!("summary: {e:?}") };
            let [(1, Field::Len(val))] = decode(summary)[..] else { panic!("one value: {summary:?}") };
            assert_eq!(decode(val), [(1, Field::Len(b"loss/train")), (2, Field::Fixed32(value.to_bits()))]);
        }

        let e = &events[3];
        assert_eq!(e[1], (2, Field::Varint(7)));
        let (5, Field::Len(summary)) = e[2] else { panic!("summary: {e:?}") };
        let [(1, Field::Len(val))] = decode(summary)[..] else { panic!("one value: {summary:?}") };
        let val = decode(val);
        assert_eq!(val[0], (1, Field::Len(b"pred")));
        let (4, Field::Len(img)) = val[1] else { panic!("image: {val:?}") };
        assert_eq!(
            decode(img),
            [(1, Field::Varint(400)), (2, Field::Varint(640)), (3, Field::Varint(3)), (4, Field::Len(&png))]
        );
    }

    #[test]
    fn second_writer_in_the_same_dir_gets_its_own_file() {
        let dir = temp_dir("twice");
        let a = EventWriter::create(&dir).unwrap();
        let b = EventWriter::create(&dir).unwrap();
        assert_ne!(a.path(), b.path());
        drop((a, b));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// An event file for `.ci/check_tensorboard.py` and TensorBoard itself: scalars `loss/train`,
    /// `loss/val` at steps 0..5 and a plot image `pred` at steps 2 and 4, in
    /// `$REGKERN_TB_DIR` (default: `<temp dir>/regkern_tb_example`), emptied first.
    #[test]
    #[ignore = "writes an example log dir for the Python checks"]
    fn write_example_logdir() {
        let dir = std::env::var_os("REGKERN_TB_DIR")
            .map_or_else(|| std::env::temp_dir().join("regkern_tb_example"), PathBuf::from);
        let _ = fs::remove_dir_all(&dir);
        let mut w = EventWriter::create(&dir).unwrap();
        for step in 0..5 {
            w.scalar("loss/train", step, 1.0 / (step + 1) as f32).unwrap();
            w.scalar("loss/val", step, 1.2 / (step + 1) as f32).unwrap();
            if step % 2 == 0 && step > 0 {
                let target: Vec<f32> = (0..50).map(|i| i as f32 / 10.0).collect();
                let pred: Vec<f32> = target.iter().map(|t| t + 0.5 / step as f32 * (t * 3.0).sin()).collect();
                let fig = crate::plot::scatter(&pred, &target, &format!("step {step}"));
                let (width, height) = fig.size();
                w.image("pred", step, &fig.to_png(), width, height).unwrap();
            }
        }
        w.flush().unwrap();
        outln!("wrote {}", w.path().display());
    }

    #[test]
    fn oversized_image_is_an_error_not_a_panic() {
        let dir = temp_dir("big");
        let mut w = EventWriter::create(&dir).unwrap();
        let err = w.image("x", 0, &[], u32::MAX, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        drop(w);
        fs::remove_dir_all(&dir).unwrap();
    }
}
