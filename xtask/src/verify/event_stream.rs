//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`), which Bedrock's
//! ConverseStream answers in; the Bedrock mock encodes its streamed reply with it.
//!
//! One message, all integers big-endian (<https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html>):
//! the prelude (total length of the message, 4 bytes; length of the headers, 4 bytes), the CRC32
//! of the prelude (4 bytes), the headers, the payload, and the CRC32 of everything before it
//! (4 bytes). A header is its name's length (1 byte), the name, a value type (1 byte; 7 is a
//! string), and for a string the value's length (2 bytes) and the value. The CRC is CRC-32 as in
//! gzip (RFC 1952). A message is 16 bytes plus its headers and payload.

/// The header value type of a UTF-8 string.
const STRING_TYPE: u8 = 7;

/// Encode one message with string `headers` and `payload`.
pub(crate) fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded_headers = Vec::new();
    for (name, value) in headers {
        let name_len = u8::try_from(name.len()).expect("a header name fits 255 bytes");
        let value_len = u16::try_from(value.len()).expect("a header value fits 65535 bytes");
        encoded_headers.push(name_len);
        encoded_headers.extend_from_slice(name.as_bytes());
        encoded_headers.push(STRING_TYPE);
        encoded_headers.extend_from_slice(&value_len.to_be_bytes());
        encoded_headers.extend_from_slice(value.as_bytes());
    }
    let total = 16 + encoded_headers.len() + payload.len();
    let total = u32::try_from(total).expect("an event-stream message fits 4 GiB");
    let mut message = Vec::with_capacity(total as usize);
    message.extend_from_slice(&total.to_be_bytes());
    message.extend_from_slice(&(encoded_headers.len() as u32).to_be_bytes());
    message.extend_from_slice(&crc32fast::hash(&message).to_be_bytes());
    message.extend_from_slice(&encoded_headers);
    message.extend_from_slice(payload);
    message.extend_from_slice(&crc32fast::hash(&message).to_be_bytes());
    message
}

/// One Bedrock stream event: `:event-type <event_type>`, `:content-type application/json`,
/// `:message-type event`, and the JSON payload.
pub(crate) fn encode_event(event_type: &str, payload: &serde_json::Value) -> Vec<u8> {
    encode_message(
        &[(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")],
        payload.to_string().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder written from the same specification, checking both CRCs; returns the headers,
    /// the payload and the bytes left after the message.
    #[allow(clippy::type_complexity)]
    fn decode(bytes: &[u8]) -> Result<(Vec<(String, String)>, Vec<u8>, &[u8]), String> {
        let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        if bytes.len() < 16 {
            return Err("shorter than 16 bytes".into());
        }
        let (total, headers_len) = (be32(0) as usize, be32(4) as usize);
        if be32(8) != crc32fast::hash(&bytes[..8]) {
            return Err("prelude CRC mismatch".into());
        }
        if total > bytes.len() || headers_len + 16 > total {
            return Err("lengths out of range".into());
        }
        if be32(total - 4) != crc32fast::hash(&bytes[..total - 4]) {
            return Err("message CRC mismatch".into());
        }
        let mut headers = Vec::new();
        let mut at = 12;
        while at < 12 + headers_len {
            let name_len = bytes[at] as usize;
            let name = String::from_utf8(bytes[at + 1..at + 1 + name_len].to_vec()).unwrap();
            at += 1 + name_len;
            assert_eq!(bytes[at], STRING_TYPE);
            let value_len = u16::from_be_bytes([bytes[at + 1], bytes[at + 2]]) as usize;
            headers.push((name, String::from_utf8(bytes[at + 3..at + 3 + value_len].to_vec()).unwrap()));
            at += 3 + value_len;
        }
        Ok((headers, bytes[12 + headers_len..total - 4].to_vec(), &bytes[total..]))
    }

    #[test]
    fn the_empty_message_has_the_known_crcs() {
        // The empty message of the AWS SDKs' event-stream test vectors: total 16, headers 0,
        // prelude CRC 0x05c248eb, message CRC 0x7d98c8ff.
        assert_eq!(hex::encode(encode_message(&[], b"")), "000000100000000005c248eb7d98c8ff");
    }

    #[test]
    fn a_message_with_a_header_and_payload_matches_the_spec_byte_for_byte() {
        // Worked by hand from the specification: total 16 + 13 (header) + 2 (payload) = 31,
        // the header `\x04name\x07\x00\x05value`; both CRCs computed independently with
        // Python's zlib.crc32 (prelude 0xf923a387, message 0x1ef5bfff).
        assert_eq!(
            hex::encode(encode_message(&[("name", "value")], b"{}")),
            "0000001f0000000df923a387046e616d6507000576616c75657b7d1ef5bfff"
        );
    }

    #[test]
    fn bedrock_events_decode_with_their_headers_and_corruption_is_caught() {
        let mut stream = encode_event("messageStart", &serde_json::json!({"role": "assistant"}));
        stream.extend(encode_event("messageStop", &serde_json::json!({"stopReason": "end_turn"})));
        let (headers, payload, rest) = decode(&stream).unwrap();
        assert_eq!(
            headers,
            [
                (":event-type".to_string(), "messageStart".to_string()),
                (":content-type".to_string(), "application/json".to_string()),
                (":message-type".to_string(), "event".to_string()),
            ]
        );
        assert_eq!(payload, br#"{"role":"assistant"}"#);
        let (headers, payload, rest) = decode(rest).unwrap();
        assert_eq!(headers[0].1, "messageStop");
        assert_eq!(payload, br#"{"stopReason":"end_turn"}"#);
        assert!(rest.is_empty());
        let mut corrupt = stream.clone();
        corrupt[20] ^= 1;
        assert_eq!(decode(&corrupt).unwrap_err(), "message CRC mismatch");
        corrupt = stream;
        corrupt[3] ^= 1;
        assert_eq!(decode(&corrupt).unwrap_err(), "prelude CRC mismatch");
    }
}
