//! A pushed message in JSON (`gate::message` with `Format::Json`) and its retry
//! identity: any bytes read or are refused; a string written with
//! `message::json_string` reads back exactly, and the same message in XML has the
//! same identity.
#![no_main]

use gate::message::{json_string, Format, Message};
use gate::safe_mode::envelope;
use gate::xml::cdata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::read(data, Format::Json) {
        let _ = message.retry_identity();
        let _ = envelope::encrypt_of(&message);
        for name in ["ToUserName", "MsgId", "Event"] {
            let _ = message.get(name);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let json = format!(
        r#"{{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgId":{}}}"#,
        json_string(text)
    );
    let m = Message::read(json.as_bytes(), Format::Json).expect("a JSON object reads");
    assert_eq!(m.get("MsgId"), Ok(Some(text)));
    // The same fields in XML identify the same message.
    let xml = format!(
        "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
         <CreateTime>1</CreateTime><MsgId>{}</MsgId></xml>",
        cdata(text)
    );
    let x = Message::read(xml.as_bytes(), Format::Xml).expect("the XML reads");
    assert_eq!(m.retry_identity(), x.retry_identity());
});
