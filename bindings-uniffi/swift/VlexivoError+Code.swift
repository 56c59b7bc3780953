// Hand-written companion to the generated Vlexivo.swift (compile both into the same module):
// UniFFI gives each error case its own associated values, so what every case carries is read
// here in one place. The switches are exhaustive: a case added without its line fails to compile.
import Foundation

extension VlexivoError {
    /// The core's stable snake_case error code ("insufficient_funds", "budget_exceeded", …).
    public var code: String {
        switch self {
        case let .InsufficientFunds(code, _, _, _, _),
             let .BudgetExceeded(code, _, _, _, _):
            return code
        case let .NotPaymentRequired(code, _):
            return code
        case let .Amount(code, _, _),
             let .Challenge(code, _, _),
             let .Wallet(code, _, _),
             let .Proof(code, _, _),
             let .Payment(code, _, _),
             let .Facilitator(code, _, _),
             let .NonceStore(code, _, _),
             let .Request(code, _, _),
             let .Config(code, _, _),
             let .Internal(code, _, _):
            return code
        }
    }

    /// A readable explanation (never contains keys, signatures or tokens).
    public var reason: String {
        switch self {
        case let .InsufficientFunds(_, reason, _, _, _),
             let .BudgetExceeded(_, reason, _, _, _):
            return reason
        case let .NotPaymentRequired(_, reason):
            return reason
        case let .Amount(_, reason, _),
             let .Challenge(_, reason, _),
             let .Wallet(_, reason, _),
             let .Proof(_, reason, _),
             let .Payment(_, reason, _),
             let .Facilitator(_, reason, _),
             let .NonceStore(_, reason, _),
             let .Request(_, reason, _),
             let .Config(_, reason, _),
             let .Internal(_, reason, _):
            return reason
        }
    }

    /// Core's category of the error ("payment", "proof", …): the case, as in every language.
    public var category: String {
        switch self {
        case .InsufficientFunds, .BudgetExceeded, .Payment: return "payment"
        case .NotPaymentRequired, .Request: return "request"
        case .Amount: return "amount"
        case .Challenge: return "challenge"
        case .Wallet: return "wallet"
        case .Proof: return "proof"
        case .Facilitator: return "facilitator"
        case .NonceStore: return "nonce_store"
        case .Config: return "config"
        case .Internal: return "internal"
        }
    }
}
