// Hand-written companion to the generated vlexivo_uniffi.kt (ship both): UniFFI gives each
// error variant its own fields, so what every variant carries is read here in one place. The
// `when`s are exhaustive over the sealed class: a variant added without its line fails to compile.
package online.vlexivo

/** The core's stable snake_case error code ("insufficient_funds", "budget_exceeded", …). */
val VlexivoException.code: String
    get() = when (this) {
        is VlexivoException.InsufficientFunds -> code
        is VlexivoException.BudgetExceeded -> code
        is VlexivoException.NotPaymentRequired -> code
        is VlexivoException.Amount -> code
        is VlexivoException.Challenge -> code
        is VlexivoException.Wallet -> code
        is VlexivoException.Proof -> code
        is VlexivoException.Payment -> code
        is VlexivoException.Facilitator -> code
        is VlexivoException.NonceStore -> code
        is VlexivoException.Request -> code
        is VlexivoException.Config -> code
        is VlexivoException.Internal -> code
    }

/** A readable explanation (never contains keys, signatures or tokens). */
val VlexivoException.reason: String
    get() = when (this) {
        is VlexivoException.InsufficientFunds -> reason
        is VlexivoException.BudgetExceeded -> reason
        is VlexivoException.NotPaymentRequired -> reason
        is VlexivoException.Amount -> reason
        is VlexivoException.Challenge -> reason
        is VlexivoException.Wallet -> reason
        is VlexivoException.Proof -> reason
        is VlexivoException.Payment -> reason
        is VlexivoException.Facilitator -> reason
        is VlexivoException.NonceStore -> reason
        is VlexivoException.Request -> reason
        is VlexivoException.Config -> reason
        is VlexivoException.Internal -> reason
    }

/** Core's category of the error ("payment", "proof", …): the variant, as in every language. */
val VlexivoException.category: String
    get() = when (this) {
        is VlexivoException.InsufficientFunds -> "payment"
        is VlexivoException.BudgetExceeded -> "payment"
        is VlexivoException.NotPaymentRequired -> "request"
        is VlexivoException.Amount -> "amount"
        is VlexivoException.Challenge -> "challenge"
        is VlexivoException.Wallet -> "wallet"
        is VlexivoException.Proof -> "proof"
        is VlexivoException.Payment -> "payment"
        is VlexivoException.Facilitator -> "facilitator"
        is VlexivoException.NonceStore -> "nonce_store"
        is VlexivoException.Request -> "request"
        is VlexivoException.Config -> "config"
        is VlexivoException.Internal -> "internal"
    }
