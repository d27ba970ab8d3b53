//! A pushed message in XML (`gate::xml`, `gate::message` with `Format::Xml`) and its
//! retry identity; safe mode's envelope reader on the same bytes. Any bytes read or
//! are refused; text written with `xml::cdata` reads back exactly.
#![no_main]

use gate::message::{Format, Message};
use gate::safe_mode::envelope;
use gate::xml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Format::of(data);
    if let Ok(fields) = xml::fields(data) {
        for name in ["Encrypt", "MsgId", "ToUserName"] {
            let _ = fields.get(name);
        }
    }
    if let Ok(message) = Message::read(data, Format::Xml) {
        let _ = message.retry_identity();
        let _ = message.text("FromUserName");
        let _ = envelope::encrypt_of(&message);
        // The identity is a function of the fields alone.
        let again = Message::read(data, Format::Xml).expect("it read once");
        assert_eq!(message.retry_identity(), again.retry_identity());
    }
    let _ = envelope::extract_encrypt(data);
    // Any text (even holding `]]>` or markup) survives a CDATA section.
    if let Ok(text) = std::str::from_utf8(data) {
        let body = format!("<xml><A>{}</A><B>1</B></xml>", xml::cdata(text));
        assert_eq!(
            xml::element(body.as_bytes(), "A"),
            Ok(Some(text.to_string())),
            "{body:?}"
        );
        assert_eq!(
            xml::element(body.as_bytes(), "B"),
            Ok(Some("1".to_string()))
        );
    }
});
