// Hand-written companion to the generated vlexivo_uniffi.kt (ship both): UniFFI gives each
// error variant its own fields, so the code every variant carries is read here in one place.
package online.vlexivo

/** The core's stable snake_case error code ("insufficient_funds", "budget_exceeded", …). */
val VlexivoException.code: String
    get() = when (this) {
        is VlexivoException.InsufficientFunds -> code
        is VlexivoException.BudgetExceeded -> code
        is VlexivoException.NotPaymentRequired -> code
        is VlexivoException.InvalidInput -> code
        is VlexivoException.Challenge -> code
        is VlexivoException.Unavailable -> code
        is VlexivoException.Refused -> code
        is VlexivoException.Token -> code
        is VlexivoException.Internal -> code
    }

/** A readable explanation (never contains keys, signatures or tokens). */
val VlexivoException.reason: String
    get() = when (this) {
        is VlexivoException.InsufficientFunds -> reason
        is VlexivoException.BudgetExceeded -> reason
        is VlexivoException.NotPaymentRequired -> reason
        is VlexivoException.InvalidInput -> reason
        is VlexivoException.Challenge -> reason
        is VlexivoException.Unavailable -> reason
        is VlexivoException.Refused -> reason
        is VlexivoException.Token -> reason
        is VlexivoException.Internal -> reason
    }
