//! Load shedding against the real `vlexivo serve` binary: past `--max-in-flight` requests a
//! request is answered at once with 503 `facilitator_overloaded` and `Retry-After`, charged
//! nothing, while `/healthz`, `/readyz` and `/metrics` still answer; once the requests in
//! flight finish, the service serves again. Synchronised with the handlers (payments held open
//! in the middle of their bodies, the in-flight gauge read from `/metrics`), not with sleeps.

mod service_support;

use serde_json::{Value, json};
use service_support::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: usize = 3;
const BURST: usize = 20;

/// A `POST /v1/payments` whose body is held half sent: its handler is in flight until `finish`.
struct Held {
    conn: TcpStream,
    rest: Vec<u8>,
}

impl Held {
    async fn start(base: &str, body: Vec<u8>) -> Self {
        let mut conn = TcpStream::connect(base.strip_prefix("http://").unwrap()).await.unwrap();
        let head = format!(
            "POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let half = body.len() / 2;
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&body[..half]).await.unwrap();
        Self { conn, rest: body[half..].to_vec() }
    }

    /// Send the rest of the body; the answer's status and JSON body.
    async fn finish(mut self) -> (u16, Value) {
        self.conn.write_all(&self.rest).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), self.conn.read_to_end(&mut raw))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        let text = String::from_utf8_lossy(&raw);
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

/// A gauge or counter of `/metrics` (0 when absent).
async fn metric(c: &reqwest::Client, base: &str, name: &str) -> f64 {
    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "/metrics is never refused");
    let text = r.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_limit_requests_are_refused_at_once_charged_nothing_and_the_service_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let f = Facilitator::start(&dir.path().join("f.db"), &["--max-in-flight", &LIMIT.to_string()]);
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    let pw = paywall(&p.api_secret, &u);
    let w = wallet();
    assert_eq!(top_up(&c, &u, &w, "1").await.0, 200);
    assert_eq!(metric(&c, &u, "vlexivo_max_in_flight").await, LIMIT as f64);

    // LIMIT payments in flight, each waiting for the rest of its body.
    let mut held = Vec::new();
    for i in 0..LIMIT {
        let req = sign(&challenge(&pw, &format!("/held/{i}"), "0.01"), &w);
        held.push(Held::start(&u, serde_json::to_vec(&req).unwrap()).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&c, &u, "vlexivo_requests_in_flight").await < LIMIT as f64 {
        assert!(Instant::now() < deadline, "the held payments never reached their handlers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A burst past the limit: every request refused at once, nothing read, nothing charged.
    let reqs: Vec<_> =
        (0..BURST).map(|i| sign(&challenge(&pw, &format!("/burst/{i}"), "0.01"), &w)).collect();
    let answers: Vec<_> = reqs
        .iter()
        .map(|req| {
            let (c, url, body) = (c.clone(), format!("{u}/v1/payments"), serde_json::to_value(req).unwrap());
            tokio::spawn(async move {
                let r = c.post(url).json(&body).send().await.unwrap();
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                (r.status().as_u16(), retry, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for a in answers {
        let (status, retry, body) = a.await.unwrap();
        assert_eq!(
            (status, retry.as_deref(), body["error"].as_str()),
            (503, Some("1"), Some("facilitator_overloaded"))
        );
    }
    let (s, v) = get(&c, &format!("{u}/v1/wallets/{}", w.address())).await;
    assert_eq!((s, v["error"].as_str()), (503, Some("facilitator_overloaded")), "every API route is limited");
    // The operations endpoints are not.
    assert_eq!(get(&c, &format!("{u}/healthz")).await.0, 200);
    assert_eq!(get(&c, &format!("{u}/readyz")).await.0, 200);
    let refused = metric(&c, &u, "vlexivo_errors_total{code=\"facilitator_overloaded\"}").await;
    assert_eq!(refused, (BURST + 1) as f64);
    assert_eq!(metric(&c, &u, "vlexivo_requests_in_flight").await, LIMIT as f64);

    // The held payments complete and are charged once each.
    for h in held {
        let (s, v) = h.finish().await;
        assert_eq!((s, v["replayed"].as_bool()), (200, Some(false)), "{v}");
    }
    // Served again: the refused payments, sent again no more than LIMIT at a time, are paid now
    // and for the first time (a charged one would come back `replayed`).
    let mut pending = reqs.into_iter();
    loop {
        let batch: Vec<_> = pending.by_ref().take(LIMIT).collect();
        if batch.is_empty() {
            break;
        }
        let answers: Vec<_> = batch
            .into_iter()
            .map(|req| {
                let (c, u) = (c.clone(), u.clone());
                tokio::spawn(async move { pay(&c, &u, &req).await })
            })
            .collect();
        for a in answers {
            let (s, v) = a.await.unwrap();
            assert_eq!((s, v["replayed"].as_bool()), (200, Some(false)), "{v}");
        }
    }
    assert_eq!(balance(&c, &u, &w).await, "0.77", "1 - (3 held + 20 burst) × 0.01: nothing more");
    let (s, me) = get_authed(&c, &format!("{u}/v1/providers/me"), &p.api_secret).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["revenue"]["count"], (LIMIT + BURST) as u64, "{me}");
    assert_eq!(metric(&c, &u, "vlexivo_requests_in_flight").await, 0.0);
    assert_eq!(metric(&c, &u, "vlexivo_errors_total{code=\"facilitator_overloaded\"}").await, refused);
}

#[tokio::test]
async fn zero_is_no_limit_and_the_default_is_per_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let c = http();
    let f = Facilitator::start(&dir.path().join("a.db"), &["--max-in-flight", "0"]);
    assert_eq!(metric(&c, &f.url, "vlexivo_max_in_flight").await, 0.0);
    drop(f);
    let f = Facilitator::start(&dir.path().join("b.db"), &[]);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        metric(&c, &f.url, "vlexivo_max_in_flight").await,
        (cpus * vlexivo_facilitator::server::MAX_IN_FLIGHT_PER_CPU) as f64
    );
}
