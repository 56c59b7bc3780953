// Hand-written companion to the generated Vlexivo.swift (compile both into the same module):
// UniFFI gives each error case its own associated values, so the code every case carries is
// read here in one place.
import Foundation

extension VlexivoError {
    /// The core's stable snake_case error code ("insufficient_funds", "budget_exceeded", …).
    public var code: String {
        switch self {
        case let .InsufficientFunds(code, _, _, _, _),
             let .BudgetExceeded(code, _, _, _, _):
            return code
        case let .NotPaymentRequired(code, _),
             let .InvalidInput(code, _),
             let .Challenge(code, _),
             let .Unavailable(code, _),
             let .Token(code, _),
             let .Internal(code, _):
            return code
        case let .Refused(code, _, _):
            return code
        }
    }

    /// A readable explanation (never contains keys, signatures or tokens).
    public var reason: String {
        switch self {
        case let .InsufficientFunds(_, reason, _, _, _),
             let .BudgetExceeded(_, reason, _, _, _):
            return reason
        case let .NotPaymentRequired(_, reason),
             let .InvalidInput(_, reason),
             let .Challenge(_, reason),
             let .Unavailable(_, reason),
             let .Token(_, reason),
             let .Internal(_, reason):
            return reason
        case let .Refused(_, reason, _):
            return reason
        }
    }
}
