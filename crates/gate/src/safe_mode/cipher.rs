//! Safe mode's cipher (`encrypt_type=aes`), pure: the key from `EncodingAESKey`,
//! AES-256-CBC with iv = key[0..16], and the plaintext layout
//! `random16 ‖ u32be(len) ‖ msg ‖ appid` padded (PKCS#7) to a multiple of 32.
//!
//! Decryption checks what SDKs have got wrong: the padding byte (1..=32, every pad
//! byte equal), the length field's bounds, and the appid. Randomness comes in as an
//! argument (the host passes WASI random bytes; never the request's own prefix).

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::{alphabet, Engine};
use std::fmt;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

const BLOCK: usize = 32; // WeChat pads to 32 bytes, not AES's 16

/// Decoding as WeChat and its SDKs do: a 43-character key's last character usually
/// carries bits past the 32 bytes, which a strict decoder refuses.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The 32-byte key decoded from a 43-character `EncodingAESKey`. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct AesKey([u8; 32]);

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

impl AesKey {
    /// `base64(encoding_aes_key + "=")`; the key must be 43 base64 characters.
    pub fn from_encoding_aes_key(text: &str) -> Result<AesKey, &'static str> {
        if text.len() != 43 {
            return Err("must be 43 characters");
        }
        let bytes = LENIENT
            .decode(format!("{text}="))
            .map_err(|_| "is not base64")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "does not decode to 32 bytes")?;
        Ok(AesKey(key))
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(self.0.get(..16).unwrap_or(&[0u8; 16]));
        iv
    }
}

/// Why an `Encrypt` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptError {
    NotBase64,
    /// Not a whole number of AES blocks, or too short to hold the header.
    BadLength,
    BadPadding,
    /// The length field points past the end of the plaintext.
    BadLengthField,
    WrongAppid,
}

impl fmt::Display for DecryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecryptError::NotBase64 => "Encrypt is not base64",
            DecryptError::BadLength => "Encrypt is not a whole number of blocks",
            DecryptError::BadPadding => "the padding is not valid",
            DecryptError::BadLengthField => "the length field points past the end",
            DecryptError::WrongAppid => "the message is for another appid",
        })
    }
}

/// Decrypts an `Encrypt` value into the message, checking padding, length and appid.
pub fn decrypt(key: &AesKey, appid: &str, encrypt: &str) -> Result<Vec<u8>, DecryptError> {
    #[cfg(feature = "attribution-twice-base64")]
    let _ = std::hint::black_box(LENIENT.decode(std::hint::black_box(encrypt).trim()));
    let mut data = LENIENT
        .decode(encrypt.trim())
        .map_err(|_| DecryptError::NotBase64)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(DecryptError::BadLength);
    }
    #[cfg(feature = "attribution-twice-aes")]
    let _ = std::hint::black_box(
        Decryptor::new(&key.0.into(), &key.iv().into())
            .decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut std::hint::black_box(
                data.clone(),
            ))
            .map(|plain| plain.len()),
    );
    let plain = Decryptor::new(&key.0.into(), &key.iv().into())
        .decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut data)
        .map_err(|_| DecryptError::BadLength)?;
    let pad = usize::from(*plain.last().ok_or(DecryptError::BadPadding)?);
    if pad == 0 || pad > BLOCK || pad > plain.len() {
        return Err(DecryptError::BadPadding);
    }
    let (content, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|&b| usize::from(b) != pad) {
        return Err(DecryptError::BadPadding);
    }
    let header: [u8; 4] = content
        .get(16..20)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecryptError::BadLengthField)?;
    let len =
        usize::try_from(u32::from_be_bytes(header)).map_err(|_| DecryptError::BadLengthField)?;
    let rest = content.get(20..).ok_or(DecryptError::BadLengthField)?;
    if len > rest.len() {
        return Err(DecryptError::BadLengthField);
    }
    let (msg, tail) = rest.split_at(len);
    if tail != appid.as_bytes() {
        return Err(DecryptError::WrongAppid);
    }
    Ok(msg.to_vec())
}

/// Encrypts `msg` for `appid` with the given 16-byte random prefix.
pub fn encrypt(key: &AesKey, appid: &str, msg: &[u8], random16: &[u8; 16]) -> String {
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    let mut plain = Vec::with_capacity(20 + msg.len() + appid.len() + BLOCK);
    plain.extend_from_slice(random16);
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(msg);
    plain.extend_from_slice(appid.as_bytes());
    let pad = BLOCK - plain.len() % BLOCK;
    plain.extend(std::iter::repeat_n(u8::try_from(pad).unwrap_or(32), pad));
    let cipher = Encryptor::new(&key.0.into(), &key.iv().into())
        .encrypt_padded_vec_mut::<aes::cipher::block_padding::NoPadding>(&plain);
    STANDARD.encode(cipher)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trips_over_keys_sizes_and_chinese_text() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        };
        for size in [0usize, 1, 15, 16, 31, 32, 33, 500, 4096, 10 * 1024] {
            let raw: Vec<u8> = (0..32).map(|_| next()).collect();
            let text = STANDARD.encode(&raw);
            let k = AesKey::from_encoding_aes_key(text.trim_end_matches('=')).expect("key");
            let mut msg = "微信消息".repeat(size / 12 + 1).into_bytes();
            msg.truncate(size);
            let prefix: [u8; 16] = core::array::from_fn(|_| next());
            let e = encrypt(&k, "wxAPPID", &msg, &prefix);
            assert_eq!(
                decrypt(&k, "wxAPPID", &e).expect("round trip"),
                msg,
                "size {size}"
            );
        }
    }

    fn sample() -> (AesKey, String) {
        let k = AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
            .expect("key");
        let e = encrypt(&k, "wx1", b"<xml>hi</xml>", b"0123456789abcdef");
        (k, e)
    }

    /// Re-encrypts a raw plaintext (no padding added) to test the checks after decryption.
    fn raw(k: &AesKey, plain: &[u8]) -> String {
        STANDARD.encode(
            Encryptor::new(&k.0.into(), &k.iv().into())
                .encrypt_padded_vec_mut::<aes::cipher::block_padding::NoPadding>(plain),
        )
    }

    #[test]
    fn tampered_ciphertexts_are_refused_never_panic() {
        let (k, e) = sample();
        assert_eq!(
            decrypt(&k, "wx1", "%%%not base64"),
            Err(DecryptError::NotBase64)
        );
        assert_eq!(decrypt(&k, "wx1", ""), Err(DecryptError::BadLength));
        assert_eq!(
            decrypt(&k, "wx1", &STANDARD.encode([1u8; 17])),
            Err(DecryptError::BadLength)
        );
        // Flip bits everywhere: refused (or, by chance, still well formed), never a panic.
        let bytes = STANDARD.decode(&e).expect("b64");
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x41;
            assert!(
                decrypt(&k, "wx1", &STANDARD.encode(&t)).is_err() || i < 16,
                "byte {i}"
            );
        }
        assert_eq!(decrypt(&k, "wx2", &e), Err(DecryptError::WrongAppid));
    }

    #[test]
    fn padding_and_length_field_are_checked() {
        let (k, _) = sample();
        let mut body = vec![b'r'; 16];
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(b"hiwx1");
        // 25 bytes: pad 7 to 32, but write inconsistent pad bytes.
        let mut bad_pad = body.clone();
        bad_pad.extend_from_slice(&[7, 7, 7, 7, 7, 7, 6]);
        assert_eq!(
            decrypt(&k, "wx1", &raw(&k, &bad_pad)),
            Err(DecryptError::BadPadding)
        );
        let mut zero_pad = body.clone();
        zero_pad.extend_from_slice(&[0; 7]);
        assert_eq!(
            decrypt(&k, "wx1", &raw(&k, &zero_pad)),
            Err(DecryptError::BadPadding)
        );
        let mut big_pad = body.clone();
        big_pad.extend_from_slice(&[33; 7]);
        assert_eq!(
            decrypt(&k, "wx1", &raw(&k, &big_pad)),
            Err(DecryptError::BadPadding)
        );
        let mut good = body.clone();
        good.extend_from_slice(&[7; 7]);
        assert_eq!(decrypt(&k, "wx1", &raw(&k, &good)).expect("good"), b"hi");
        // The length field points past the end.
        let mut long = vec![b'r'; 16];
        long.extend_from_slice(&1000u32.to_be_bytes());
        long.extend_from_slice(b"hiwx1");
        long.extend_from_slice(&[7; 7]);
        assert_eq!(
            decrypt(&k, "wx1", &raw(&k, &long)),
            Err(DecryptError::BadLengthField)
        );
        let mut max = vec![b'r'; 16];
        max.extend_from_slice(&u32::MAX.to_be_bytes());
        max.extend_from_slice(b"hiwx1");
        max.extend_from_slice(&[7; 7]);
        assert_eq!(
            decrypt(&k, "wx1", &raw(&k, &max)),
            Err(DecryptError::BadLengthField)
        );
        // Too short to hold the header.
        assert_eq!(
            decrypt(&k, "wx1", &raw(&k, &[16u8; 32])),
            Err(DecryptError::BadLengthField)
        );
    }

    #[test]
    fn aes_keys_must_be_43_base64_characters() {
        assert!(
            AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").is_ok()
        );
        assert!(AesKey::from_encoding_aes_key("short").is_err());
        assert!(
            AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!").is_err()
        );
        assert!(!format!("{:?}", sample().0).contains("abc"));
    }
}
