// A URLSession wrapper that pays Vlexivo 402s: send, and on a 402 hand the response to
// `VlexivoPayments.pay`, then send the same request again with the proof header.
//
// Syntax-checked with tree-sitter-swift in this repository's CI (there is no Swift compiler
// here); compiled by apps that add the Vlexivo package (see bindings-uniffi/README.md).
import Foundation
import Vlexivo

public struct PaidResponse {
    public let data: Data
    public let response: HTTPURLResponse
    /// Set when this call was paid for: price, tx hash, balance after.
    public let payment: PaymentResult?
}

public final class PayingURLSession {
    private let session: URLSession
    private let payments: VlexivoPayments

    public init(payments: VlexivoPayments, session: URLSession = .shared) {
        self.payments = payments
        self.session = session
    }

    /// Like `URLSession.data(for:)`, paying at most once per call. Throws `VlexivoError`
    /// (`.InsufficientFunds` carries `required` and `balance`; `.BudgetExceeded` the limit hit).
    public func data(for request: URLRequest) async throws -> PaidResponse {
        // The body is sent twice: a stream cannot be, so refuse before spending anything.
        if request.httpBodyStream != nil {
            throw VlexivoError.Request(
                code: "body_not_replayable",
                reason: "set httpBody (Data) instead of httpBodyStream on paid requests",
                status: 400
            )
        }
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse else {
            throw URLError(.badServerResponse)
        }
        guard http.statusCode == 402, let url = request.url else {
            return PaidResponse(data: data, response: http, payment: nil)
        }

        let headers: [HttpHeader] = http.allHeaderFields.compactMap { key, value in
            guard let name = key as? String else { return nil }
            return HttpHeader(name: name, value: String(describing: value))
        }
        let payment: PaymentResult
        do {
            // Async all the way: signing and the facilitator round trip run on Rust's tokio
            // runtime, never on the caller's (main) thread.
            payment = try await payments.pay(
                status: UInt16(http.statusCode),
                headers: headers,
                body: data,
                method: request.httpMethod ?? "GET",
                url: url.absoluteString
            )
        } catch let error as VlexivoError where error.code == "not_payment_required" {
            // A 402 from another payment scheme: the app sees it unchanged.
            return PaidResponse(data: data, response: http, payment: nil)
        }

        var retry = request
        retry.setValue(payment.header.value, forHTTPHeaderField: payment.header.name)
        let (paidData, paidResponse) = try await session.data(for: retry)
        guard let paidHTTP = paidResponse as? HTTPURLResponse else {
            throw URLError(.badServerResponse)
        }
        return PaidResponse(data: paidData, response: paidHTTP, payment: payment)
    }
}

// Usage (for instance in a view model):
//
//     let wallet = try Wallet.fromKey(hex: keychain.walletKey)
//     let payments = try VlexivoPayments(
//         wallet: wallet,
//         policy: SpendingPolicy(maxPerCall: "0.05", maxTotal: "5"),
//         autoTopUp: AutoTopUp(enabled: true, triggerBalance: "1.00", topUpAmount: "10.00")
//     )
//     let client = PayingURLSession(payments: payments)
//     var request = URLRequest(url: URL(string: "https://api.provider.com/v1/inference")!)
//     request.httpMethod = "POST"
//     request.httpBody = try JSONEncoder().encode(["model": "large-v2", "prompt": prompt])
//     do {
//         let paid = try await client.data(for: request)
//         print(paid.payment?.price ?? "free", String(decoding: paid.data, as: UTF8.self))
//     } catch let VlexivoError.InsufficientFunds(_, _, required, balance, _) {
//         print("needs $\(required), wallet holds $\(balance)")
//     }
