//! Temporary media: `media/upload` (multipart, field `media` with a filename, 10 MiB at
//! most), `media/get` (the bytes back, with the upload's content type and filename), and
//! `POST /__media`, which plants a file without an upload (for large downloads).

use super::http::{Outcome, Request};
use super::multipart;
use super::routes::{bad_request, check_access_token, errcode, ok};
use super::state::{now_ms, random_value, Media, Shared};
use serde_json::json;
use std::sync::Arc;

/// WeChat's limit for temporary media (images and videos; the mock uses it for all).
const MAX_MEDIA_BYTES: usize = 10 * 1024 * 1024;

/// `POST /cgi-bin/media/upload?access_token=&type=image|voice|video|thumb`.
pub(super) fn upload(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "POST" {
        return errcode(43002, "require POST method");
    }
    if let Err(refused) = check_access_token(&mut shared.lock(), req) {
        return refused;
    }
    let kind = match req.query("type").as_deref() {
        Some(kind @ ("image" | "voice" | "video" | "thumb")) => kind.to_string(),
        _ => return errcode(40004, "invalid media type"),
    };
    let Some(boundary) = req.content_type.as_deref().and_then(multipart::boundary) else {
        return errcode(41005, "media data missing");
    };
    let Ok(parts) = multipart::parse(&req.body, &boundary) else {
        return errcode(41005, "media data missing");
    };
    let Some(part) = parts.into_iter().find(|p| p.name == "media") else {
        return errcode(41005, "media data missing");
    };
    let Some(filename) = part.filename.filter(|f| !f.is_empty()) else {
        return errcode(41005, "media data missing");
    };
    if part.data.is_empty() || part.data.len() > MAX_MEDIA_BYTES {
        return errcode(40006, "invalid media size");
    }
    let media = Media {
        filename,
        content_type: part.content_type,
        bytes: Arc::new(part.data.to_vec()),
    };
    let Some(media_id) = store(shared, media) else {
        return errcode(-1, "system error");
    };
    ok(&json!({
        "type": kind,
        "media_id": media_id,
        "created_at": now_ms() / 1000
    }))
}

/// `GET /cgi-bin/media/get?access_token=&media_id=`.
pub(super) fn get(shared: &Shared, req: &Request) -> Outcome {
    if req.method != "GET" {
        return errcode(43001, "require GET method");
    }
    let found = {
        let mut state = shared.lock();
        if let Err(refused) = check_access_token(&mut state, req) {
            return refused;
        }
        req.query("media_id")
            .and_then(|id| state.media.get(&id))
            .map(|m| {
                (
                    m.filename.clone(),
                    m.content_type.clone(),
                    Arc::clone(&m.bytes),
                )
            })
    };
    let Some((filename, content_type, bytes)) = found else {
        return errcode(40007, "invalid media_id");
    };
    let content_type = content_type.unwrap_or_else(|| "application/octet-stream".into());
    // Quotes and line breaks cannot be in a quoted-string; a planted name may have them.
    let filename: String = filename
        .chars()
        .map(|c| if c == '"' || c.is_control() { '_' } else { c })
        .collect();
    Outcome::Reply {
        status: 200,
        headers: vec![
            ("content-type", content_type),
            (
                "content-disposition",
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body: bytes.to_vec(),
    }
}

/// `POST /__media[?filename=][&size=N]`: the body (or N pattern bytes) as a media file.
pub(super) fn plant(shared: &Shared, req: &Request) -> Outcome {
    let bytes = match req.query("size") {
        None => req.body.clone(),
        Some(size) => match size.parse::<usize>() {
            // i % 251 fits in a byte.
            Ok(n) => (0..n).map(|i| (i % 251) as u8).collect(),
            Err(_) => return bad_request("size must be a number of bytes"),
        },
    };
    let media = Media {
        filename: req.query("filename").unwrap_or_else(|| "media.bin".into()),
        content_type: req.content_type.clone(),
        bytes: Arc::new(bytes),
    };
    match store(shared, media) {
        Some(media_id) => ok(&json!({ "media_id": media_id })),
        None => errcode(-1, "system error"),
    }
}

fn store(shared: &Shared, media: Media) -> Option<String> {
    let media_id = random_value("MOCKMEDIA_", 40)?;
    shared.lock().media.insert(media_id.clone(), media);
    Some(media_id)
}
