//! The client vectors' JSON form of a payer call's inputs and steps (tests/vectors/client.json):
//! one encoding shared by the generator that records the flows and the Rust test that replays
//! them (the other languages have their own readers).
use super::{Call, Step};
use serde_json::{Value, json};

/// Feed one recorded input (`{"start": …}`, `{"response": …}`, …) to a call; the step it
/// returns, in the vectors' JSON form.
pub fn feed(call: &mut Call, input: &Value) -> Value {
    let (kind, v) = input.as_object().unwrap().iter().next().unwrap();
    let r = match kind.as_str() {
        "start" => Ok(call.start()),
        "response" => {
            let headers: Vec<(String, String)> = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
                .collect();
            call.response(
                v["status"].as_u64().unwrap() as u16,
                headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                v["body"].as_str().map(str::as_bytes),
                v["url"].as_str(),
            )
        }
        "answer" => call.answer(v["status"].as_u64().unwrap() as u16, v["body"].as_str().unwrap().as_bytes()),
        "transport_error" => call.transport_error(v["sent"].as_bool().unwrap(), "vector"),
        "resume" => call.resume(),
        "request_failed" => {
            call.request_failed();
            return Value::Null;
        }
        other => panic!("unknown input {other}"),
    };
    match r {
        Err(e) => json!({ "error": e.code() }),
        Ok(Step::Send { url, headers }) => {
            let proof = headers.iter().find(|(k, _)| *k == crate::headers::PROOF).map(|(_, v)| v.clone());
            json!({ "send": { "url": url, "proof": proof } })
        }
        Ok(Step::ReadBody { limit }) => json!({ "read_body": { "limit": limit } }),
        Ok(Step::Facilitator(r)) => {
            json!({ "facilitator": { "method": r.method, "url": r.url, "body": r.body } })
        }
        Ok(Step::Paid(e)) => json!({ "paid": {
            "price": e.price.to_string(), "nonce": e.receipt.nonce, "replayed": e.receipt.replayed,
            "topped_up": e.topped_up.map(|t| t.to_string()), "reconciled": e.reconciled } }),
        Ok(Step::Wait { .. }) => json!({ "wait": {} }),
        Ok(Step::Return) => json!({ "return": {} }),
    }
}
