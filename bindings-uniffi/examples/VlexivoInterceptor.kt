// An OkHttp Interceptor that pays Vlexivo 402s: on a 402, hand the response to
// VlexivoPayments.pay and send the same request again with the proof header.
//
// SKETCH, NOT COMPILED in this repository: OkHttp comes from Maven Central, which is not
// reachable here. The Vlexivo calls are the generated API that tests/kotlin/VlexivoTests.kt
// compiles and runs for real (with java.net.http instead of OkHttp).
package online.vlexivo.examples

import kotlinx.coroutines.runBlocking
import okhttp3.Interceptor
import okhttp3.OkHttpClient
import okhttp3.Response
import online.vlexivo.HttpHeader
import online.vlexivo.VlexivoException
import online.vlexivo.VlexivoPayments
import java.io.IOException

/** OkHttp only lets interceptors throw IOExceptions; the typed Vlexivo error rides inside. */
class VlexivoPaymentException(val error: VlexivoException) : IOException(error.message, error)

class VlexivoInterceptor(private val payments: VlexivoPayments) : Interceptor {
    override fun intercept(chain: Interceptor.Chain): Response {
        val request = chain.request()
        val response = chain.proceed(request)
        if (response.code != 402) return response

        // The challenge is in a header and in the (small) JSON body; peek so the app can
        // still read the 402 if it is not a Vlexivo one.
        val body = response.peekBody(64 * 1024).bytes()
        val headers = response.headers.map { (name, value) -> HttpHeader(name, value) }
        val payment = try {
            // Interceptors run on OkHttp's dispatcher threads (Android forbids network calls
            // on the main thread anyway), so waiting for the suspend call here blocks no UI.
            runBlocking {
                payments.pay(response.code.toUShort(), headers, body, request.method, request.url.toString())
            }
        } catch (e: VlexivoException.NotPaymentRequired) {
            return response // a 402 from another payment scheme: the app sees it unchanged
        } catch (e: VlexivoException) {
            response.close()
            throw VlexivoPaymentException(e)
        }
        response.close()

        if (request.body?.isOneShot() == true) {
            // Paid, but the body cannot be sent twice. The token stays valid until
            // payment.expiresAt: an app could rebuild the request and attach it itself.
            throw IOException("request body is one-shot and cannot be replayed after payment")
        }
        return chain.proceed(
            request.newBuilder().header(payment.header.name, payment.header.value).build(),
        )
    }
}

// Usage:
//
//     val payments = VlexivoPayments(
//         wallet = Wallet.fromKey(keyFromEncryptedPrefs),
//         policy = SpendingPolicy(maxPerCall = "0.05", maxTotal = "5"),
//         autoTopUp = AutoTopUp(enabled = true, triggerBalance = "1.00", topUpAmount = "10.00"),
//     )
//     val client = OkHttpClient.Builder().addInterceptor(VlexivoInterceptor(payments)).build()
//     try {
//         client.newCall(request).execute().use { println(it.body?.string()) }
//     } catch (e: VlexivoPaymentException) {
//         when (val err = e.error) {
//             is VlexivoException.InsufficientFunds -> askUser("needs $${err.required}, holds $${err.balance}")
//             is VlexivoException.BudgetExceeded -> log("limit ${err.limit} reached")
//             else -> throw e
//         }
//     }
@Suppress("unused")
private fun sketch(payments: VlexivoPayments): OkHttpClient =
    OkHttpClient.Builder().addInterceptor(VlexivoInterceptor(payments)).build()
