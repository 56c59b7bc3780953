use super::*;
use serde_json::json;

const HASH: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

fn addr(b: u8) -> Address {
    Address([b; 20])
}

fn topic_of(sig: &str) -> String {
    format!("0x{}", hex::encode(keccak256(sig.as_bytes())))
}

fn word_addr(a: &Address) -> String {
    format!("0x{}", hex::encode(address_topic(a)))
}

fn transfer_log(token: &Address, from: &Address, to: &Address, value: u64, index: u64) -> Value {
    json!({
        "address": token.to_checksum(),
        "topics": [topic_of("Transfer(address,address,uint256)"), word_addr(from), word_addr(to)],
        "data": format!("0x{:064x}", value),
        "logIndex": format!("0x{index:x}"),
        "removed": false,
    })
}

fn used_log(token: &Address, authorizer: &Address, nonce: [u8; 32], index: u64) -> Value {
    json!({
        "address": token.to_checksum(),
        "topics": [topic_of("AuthorizationUsed(address,bytes32)"), word_addr(authorizer),
            format!("0x{}", hex::encode(nonce))],
        "data": "0x",
        "logIndex": format!("0x{index:x}"),
    })
}

fn receipt(status: u8, block: u64, logs: Vec<Value>) -> Value {
    json!({
        "transactionHash": HASH,
        "blockNumber": format!("0x{block:x}"),
        "status": format!("0x{status}"),
        "gasUsed": "0x1342b",
        "logs": logs,
    })
}

fn expected() -> Expected {
    Expected {
        token: addr(0xaa),
        payer: addr(0x01),
        payee: addr(0x02),
        amount: 1_000,
        confirmations: 1,
        authorization_nonce: None,
    }
}

fn check(r: &Value, head: u64, e: &Expected) -> Result<Verified> {
    check_receipt(HASH, r, head, e)
}

#[test]
fn a_receipt_with_the_transfer_verifies() {
    let e = expected();
    let r = receipt(1, 10, vec![transfer_log(&e.token, &e.payer, &e.payee, 1_000, 4)]);
    let v = check(&r, 12, &e).unwrap();
    assert_eq!((v.block, v.confirmations, v.gas_used, v.log_index), (10, 3, 0x1342b, 4));
    assert_eq!((v.transfers, v.matching, v.authorization_checked), (1, 1, false));
    assert_eq!(v.amount, "0.001");
    assert_eq!(v.payee, e.payee.to_checksum());
    assert_eq!(v.tx_hash, HASH);
}

#[test]
fn each_wrong_field_is_named() {
    let e = expected();
    let r =
        |from: &Address, to: &Address, v: u64| receipt(1, 10, vec![transfer_log(&e.token, from, to, v, 0)]);
    let field = |r: &Value| match check(r, 10, &e).unwrap_err() {
        Error::TransferMismatch { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(&r(&e.payer, &addr(3), 1_000)), "payee");
    assert_eq!(field(&r(&addr(3), &e.payee, 1_000)), "payer");
    assert_eq!(field(&r(&e.payer, &e.payee, 2_000)), "amount");
    let err = check(&r(&e.payer, &e.payee, 2_000), 10, &e).unwrap_err();
    assert_eq!(err.details(), json!({"field": "amount", "expected": "0.001", "got": "0.002"}));
    assert_eq!((err.code(), err.http_status()), ("transfer_mismatch", 402));
    // The same transfer in another token contract.
    let other = receipt(1, 10, vec![transfer_log(&addr(0xbb), &e.payer, &e.payee, 1_000, 0)]);
    let err = check(&other, 10, &e).unwrap_err();
    assert_eq!(err.details()["field"], "token");
    assert_eq!(err.details()["got"], addr(0xbb).to_checksum());
    let none = receipt(1, 10, vec![]);
    assert_eq!(check(&none, 10, &e).unwrap_err().details()["got"], "no Transfer log");
}

#[test]
fn unknown_reverted_and_shallow_transactions_have_their_codes() {
    let e = expected();
    assert_eq!(check(&Value::Null, 10, &e).unwrap_err().code(), "transaction_not_found");
    let reverted = receipt(0, 10, vec![]);
    assert_eq!(check(&reverted, 10, &e).unwrap_err().code(), "settlement_failed");
    let ok = receipt(1, 10, vec![transfer_log(&e.token, &e.payer, &e.payee, 1_000, 0)]);
    let deep = Expected { confirmations: 3, ..e.clone() };
    let err = check(&ok, 11, &deep).unwrap_err();
    assert_eq!(err, Error::ConfirmationsPending { confirmations: 2, required: 3 });
    assert_eq!(check(&ok, 12, &deep).unwrap().confirmations, 3);
    // A node behind the block it answered from (load-balanced): 0 deep, not an underflow.
    assert_eq!(check(&ok, 5, &e).unwrap_err().code(), "confirmations_pending");
    // 0 confirmations asked: mined is enough.
    assert!(check(&ok, 10, &Expected { confirmations: 0, ..e.clone() }).is_ok());
    // A wrong transfer is wrong at any depth: mismatch wins over depth.
    let wrong = receipt(1, 10, vec![transfer_log(&e.token, &e.payer, &e.payee, 5, 0)]);
    assert_eq!(check(&wrong, 10, &deep).unwrap_err().code(), "transfer_mismatch");
}

#[test]
fn in_a_batched_transaction_the_matching_transfer_is_picked_and_counted() {
    let e = expected();
    let t = &e.token;
    let logs = vec![
        transfer_log(t, &addr(5), &e.payee, 1_000, 7),
        transfer_log(t, &e.payer, &addr(6), 1_000, 8),
        transfer_log(t, &e.payer, &e.payee, 1_000, 9),
        transfer_log(t, &e.payer, &e.payee, 3_000, 10),
    ];
    let v = check(&receipt(1, 10, logs.clone()), 10, &e).unwrap();
    assert_eq!((v.log_index, v.transfers, v.matching), (9, 4, 1));
    // Nothing matches: the closest transfer names the difference (same payer and payee).
    let want = Expected { amount: 2_000, ..e.clone() };
    let err = check(&receipt(1, 10, logs), 10, &want).unwrap_err();
    assert_eq!(err.details(), json!({"field": "amount", "expected": "0.002", "got": "0.001"}));
}

#[test]
fn the_authorization_nonce_pins_the_transfer_of_that_authorization() {
    let e = expected();
    let t = &e.token;
    let (n1, n2) = ([1u8; 32], [2u8; 32]);
    // Two identical payments in one batch: the hash alone matches both.
    let logs = vec![
        used_log(t, &e.payer, n1, 0),
        transfer_log(t, &e.payer, &e.payee, 1_000, 1),
        used_log(t, &e.payer, n2, 2),
        transfer_log(t, &e.payer, &e.payee, 1_000, 3),
    ];
    let r = receipt(1, 10, logs);
    assert_eq!(check(&r, 10, &e).unwrap().matching, 2);
    let pinned = check(&r, 10, &Expected { authorization_nonce: Some(n2), ..e.clone() }).unwrap();
    assert_eq!((pinned.log_index, pinned.authorization_checked), (3, true));
    assert_eq!(check(&r, 10, &Expected { authorization_nonce: Some(n1), ..e.clone() }).unwrap().log_index, 1);
    let err = check(&r, 10, &Expected { authorization_nonce: Some([3; 32]), ..e.clone() }).unwrap_err();
    assert_eq!(err.details()["field"], "authorization");
    // The authorization's own transfer is what is compared, not another one of the batch.
    let other = vec![
        used_log(t, &e.payer, n1, 0),
        transfer_log(t, &e.payer, &e.payee, 9_000, 1),
        transfer_log(t, &e.payer, &e.payee, 1_000, 2),
    ];
    let err =
        check(&receipt(1, 10, other), 10, &Expected { authorization_nonce: Some(n1), ..e }).unwrap_err();
    assert_eq!(err.details()["field"], "amount");
}

#[test]
fn the_json_rpc_answer_is_read_and_node_faults_are_chain_unavailable() {
    let e = expected();
    let check = PaymentCheck::new(&HASH.to_ascii_uppercase().replace("0X", "0x"), e.clone()).unwrap();
    let req: Value = serde_json::from_str(&check.request()).unwrap();
    assert_eq!(req[0]["method"], "eth_getTransactionReceipt");
    assert_eq!(req[0]["params"][0], HASH);
    assert_eq!(req[1]["method"], "eth_blockNumber");
    let r = receipt(1, 10, vec![transfer_log(&e.token, &e.payer, &e.payee, 1_000, 0)]);
    // Batch answers may come in any order.
    let body =
        json!([{"jsonrpc": "2.0", "id": 2, "result": "0xb"}, {"jsonrpc": "2.0", "id": 1, "result": r}]);
    assert_eq!(check.answer(200, body.to_string().as_bytes()).unwrap().confirmations, 2);
    let unknown = json!([{"id": 1, "result": null}, {"id": 2, "result": "0xb"}]);
    assert_eq!(
        check.answer(200, unknown.to_string().as_bytes()).unwrap_err().code(),
        "transaction_not_found"
    );
    let faults: [(u16, &str); 6] = [
        (502, "bad gateway"),
        (200, "<html>"),
        (200, r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"batches not allowed"}}"#),
        (200, r#"[{"id":1,"error":{"code":-32000,"message":"header not found"}},{"id":2,"result":"0x1"}]"#),
        (200, r#"[{"id":2,"result":"0x1"}]"#),
        (200, r#"[{"id":1,"result":null},{"id":2,"result":"latest"}]"#),
    ];
    for (status, body) in faults {
        let err = check.answer(status, body.as_bytes()).unwrap_err();
        assert_eq!((err.code(), err.http_status()), ("chain_unavailable", 503), "{body}: {err}");
    }
    let other = json!([{"id": 1, "result": {"transactionHash": format!("0x{}", "2".repeat(64)), "blockNumber": "0x1", "status": "0x1", "logs": []}}, {"id": 2, "result": "0x1"}]);
    assert_eq!(check.answer(200, other.to_string().as_bytes()).unwrap_err().code(), "chain_unavailable");
    assert_eq!(check.unreachable("connection refused").code(), "chain_unavailable");
    for bad in ["", "0x12", "11".repeat(32).as_str(), &format!("0x{}", "g".repeat(64))] {
        assert_eq!(PaymentCheck::new(bad, e.clone()).unwrap_err().code(), "request_malformed", "{bad}");
    }
}

#[test]
fn expected_values_parse_from_strings() {
    let token = addr(0xaa).to_checksum();
    let e =
        Expected::parse(&token, &addr(1).to_checksum(), &addr(2).to_checksum(), "0.001", 2, None).unwrap();
    assert_eq!((e.amount, e.confirmations), (1_000, 2));
    let nonce = format!("0x{}", "ab".repeat(32));
    let e = Expected::parse(&token, &token, &token, "1", 1, Some(&nonce)).unwrap();
    assert_eq!(e.authorization_nonce, Some([0xab; 32]));
    assert_eq!(Expected::parse(&token, "0x12", &token, "1", 1, None).unwrap_err().code(), "address_invalid");
    assert_eq!(Expected::parse(&token, &token, &token, "0", 1, None).unwrap_err().code(), "amount_zero");
    assert_eq!(
        Expected::parse(&token, &token, &token, "1", 1, Some("0x1")).unwrap_err().code(),
        "request_malformed"
    );
}
