// End-to-end tests of the generated Kotlin bindings, run for real: a facilitator process
// (`vlexivo serve`), a paid API process (examples/paid_api.rs, the facilitator crate's
// PaywallLayer) and this JVM calling them over loopback with java.net.http, as an app would.
//
// A small runner instead of JUnit (Maven Central is not reachable from CI). It closes with
// "N passed, M failed" and exits non-zero on any failure or if nothing ran.
//
// Usage: VlexivoTestsKt --vlexivo PATH --paid-api PATH --test-pki PATH --vectors DIR
// (and -Djna.library.path=DIR-with-libvlexivo_uniffi.so)
package online.vlexivo.tests

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import online.vlexivo.AutoTopUp
import online.vlexivo.FlowStep
import online.vlexivo.PaymentExpectation
import online.vlexivo.PaymentFlow
import online.vlexivo.HttpHeader
import online.vlexivo.PaymentResult
import online.vlexivo.SpendingPolicy
import online.vlexivo.TlsOptions
import online.vlexivo.TrustRoots
import online.vlexivo.VlexivoException
import online.vlexivo.VlexivoPayments
import online.vlexivo.Wallet
import online.vlexivo.category
import online.vlexivo.code
import online.vlexivo.decodeChallenge
import online.vlexivo.errorCategories
import online.vlexivo.errorCategory
import online.vlexivo.errorCodes
import online.vlexivo.headerNames
import online.vlexivo.parsePaymentRequired
import online.vlexivo.proofHeaderName
import online.vlexivo.verifyPayment
import java.io.File
import java.math.BigDecimal
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.time.Duration
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.TimeUnit
import kotlin.system.exitProcess

// ------------------------------------------------------------------------------------------
// Assertions

class AssertionFailed(message: String) : Exception(message)

fun check(cond: Boolean, message: () -> String) {
    if (!cond) throw AssertionFailed(message())
}

fun <T> eq(actual: T, expected: T, what: String = "value") {
    check(actual == expected) { "$what: expected <$expected>, got <$actual>" }
}

fun dec(s: String): BigDecimal = BigDecimal(s)

fun eqAmount(actual: String, expected: String, what: String) {
    check(dec(actual).compareTo(dec(expected)) == 0) { "$what: expected <$expected>, got <$actual>" }
}

inline fun <reified E : VlexivoException> expectThrows(block: () -> Unit): E {
    try {
        block()
    } catch (e: VlexivoException) {
        if (e is E) return e
        throw AssertionFailed("expected ${E::class.simpleName}, got ${e::class.simpleName}: ${e.message}")
    }
    throw AssertionFailed("expected ${E::class.simpleName}, nothing was thrown")
}

// ------------------------------------------------------------------------------------------
// A minimal JSON reader for the shared vectors (the JDK has none): objects as maps, arrays as
// lists, integers as Long, other numbers as BigDecimal.

class Json(private val s: String) {
    private var i = 0

    fun parse(): Any? {
        val v = value()
        ws()
        require(i == s.length) { "trailing data at $i" }
        return v
    }

    private fun ws() {
        while (i < s.length && s[i].isWhitespace()) i++
    }

    private fun value(): Any? {
        ws()
        return when (s[i]) {
            '{' -> obj()
            '[' -> arr()
            '"' -> str()
            't' -> lit("true", true)
            'f' -> lit("false", false)
            'n' -> lit("null", null)
            else -> num()
        }
    }

    private fun lit(word: String, v: Any?): Any? {
        require(s.startsWith(word, i)) { "bad literal at $i" }
        i += word.length
        return v
    }

    private fun obj(): Map<String, Any?> {
        val m = LinkedHashMap<String, Any?>()
        i++
        ws()
        if (s[i] == '}') { i++; return m }
        while (true) {
            ws()
            val k = str()
            ws(); require(s[i] == ':'); i++
            m[k] = value()
            ws()
            if (s[i] == ',') { i++; continue }
            require(s[i] == '}') { "expected } at $i" }
            i++
            return m
        }
    }

    private fun arr(): List<Any?> {
        val l = ArrayList<Any?>()
        i++
        ws()
        if (s[i] == ']') { i++; return l }
        while (true) {
            l.add(value())
            ws()
            if (s[i] == ',') { i++; continue }
            require(s[i] == ']') { "expected ] at $i" }
            i++
            return l
        }
    }

    private fun str(): String {
        require(s[i] == '"') { "expected string at $i" }
        i++
        val sb = StringBuilder()
        while (true) {
            val c = s[i++]
            when (c) {
                '"' -> return sb.toString()
                '\\' -> {
                    when (val e = s[i++]) {
                        'n' -> sb.append('\n'); 't' -> sb.append('\t'); 'r' -> sb.append('\r')
                        'b' -> sb.append('\b'); 'f' -> sb.append('\u000c')
                        'u' -> { sb.append(s.substring(i, i + 4).toInt(16).toChar()); i += 4 }
                        else -> sb.append(e)
                    }
                }
                else -> sb.append(c)
            }
        }
    }

    private fun num(): Any {
        val start = i
        while (i < s.length && (s[i].isDigit() || s[i] in "+-.eE")) i++
        val t = s.substring(start, i)
        return t.toLongOrNull() ?: BigDecimal(t)
    }
}

@Suppress("UNCHECKED_CAST")
fun Any?.obj(): Map<String, Any?> = this as Map<String, Any?>

@Suppress("UNCHECKED_CAST")
fun Any?.list(): List<Any?> = this as List<Any?>

fun readJson(f: File): Map<String, Any?> = Json(f.readText()).parse().obj()

// ------------------------------------------------------------------------------------------
// Services: real processes on loopback

class Service(val name: String, val process: Process, val values: Map<String, String>, val log: File) {
    fun stop() {
        process.destroy()
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly()
    }
}

/** Start a process and wait for the `KEY=value` lines it prints on stdout when ready. */
fun startService(name: String, cmd: List<String>, keys: List<String>, dir: File): Service =
    startService(name, ProcessBuilder(cmd), keys, dir)

fun startService(name: String, cmd: ProcessBuilder, keys: List<String>, dir: File): Service {
    val log = File(dir, "$name.log")
    val p = cmd.redirectError(log).start()
    val values = ConcurrentHashMap<String, String>()
    Thread {
        p.inputStream.bufferedReader().forEachLine { line ->
            val eq = line.indexOf('=')
            if (eq > 0) values[line.substring(0, eq)] = line.substring(eq + 1).trim()
        }
    }.apply { isDaemon = true }.start()
    val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
    while (!keys.all { values.containsKey(it) }) {
        if (!p.isAlive || System.nanoTime() > deadline) {
            p.destroyForcibly()
            throw IllegalStateException("$name did not start: ${log.takeIf { it.exists() }?.readText()?.takeLast(2000)}")
        }
        Thread.sleep(20)
    }
    return Service(name, p, HashMap(values), log)
}

// ------------------------------------------------------------------------------------------
// The app's side: its own HTTP client, and the pay-and-retry loop it writes around `pay`.

val http: HttpClient = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build()

/** One JSON-RPC call to the live devnet's node (`params`: JSON text); its `result`. */
fun rpc(live: Map<String, String>, method: String, params: String): Any? {
    val call = """{"jsonrpc":"2.0","id":1,"method":"$method","params":$params}"""
    val req = HttpRequest.newBuilder(URI(live.getValue("VLX_RPC_URL")))
        .header("content-type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofString(call))
        .build()
    val res = Json(http.send(req, HttpResponse.BodyHandlers.ofString()).body()).parse().obj()
    check(res["error"] == null) { "$method: ${res["error"]}" }
    return res["result"]
}

/** The token balance of `who` on the live devnet, read from the chain (`eth_call balanceOf`). */
fun tokenBalance(live: Map<String, String>, who: String): java.math.BigInteger {
    val data = "0x70a08231" + who.removePrefix("0x").lowercase().padStart(64, '0')
    val result = rpc(live, "eth_call", """[{"to":"${live.getValue("VLX_ASSET")}","data":"$data"},"latest"]""") as String
    return java.math.BigInteger(result.removePrefix("0x"), 16)
}

/** The app's HTTP client trusting one extra CA (the tests' private one), as an app would for a
 *  staging API. */
fun trustingClient(caPem: String): HttpClient {
    val ca = java.security.cert.CertificateFactory.getInstance("X.509").generateCertificate(caPem.byteInputStream())
    val store = java.security.KeyStore.getInstance(java.security.KeyStore.getDefaultType())
    store.load(null, null)
    store.setCertificateEntry("vlexivo-test-ca", ca)
    val tmf = javax.net.ssl.TrustManagerFactory.getInstance(javax.net.ssl.TrustManagerFactory.getDefaultAlgorithm())
    tmf.init(store)
    val ssl = javax.net.ssl.SSLContext.getInstance("TLS")
    ssl.init(null, tmf.trustManagers, null)
    return HttpClient.newBuilder().sslContext(ssl).connectTimeout(Duration.ofSeconds(10)).build()
}

fun send(
    method: String,
    url: String,
    body: ByteArray? = null,
    extra: List<HttpHeader> = emptyList(),
    client: HttpClient = http,
): HttpResponse<ByteArray> {
    val b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30))
    val publisher = if (body == null) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofByteArray(body)
    b.method(method, publisher)
    if (body != null) b.header("Content-Type", "application/json")
    for (h in extra) b.header(h.name, h.value)
    return client.send(b.build(), HttpResponse.BodyHandlers.ofByteArray())
}

fun HttpResponse<ByteArray>.headerList(): List<HttpHeader> =
    headers().map().flatMap { (k, vs) -> vs.map { HttpHeader(k, it) } }

class Paid(val response: HttpResponse<ByteArray>, val payment: PaymentResult?)

/** Send; on a 402, pay it and send the same request again with the proof header. */
suspend fun paidCall(
    payments: VlexivoPayments,
    method: String,
    url: String,
    body: ByteArray? = null,
    client: HttpClient = http,
): Paid {
    val first = withContext(Dispatchers.IO) { send(method, url, body, client = client) }
    if (first.statusCode() != 402) return Paid(first, null)
    val payment = payments.pay(first.statusCode().toUShort(), first.headerList(), first.body(), method, url)
    val retry = withContext(Dispatchers.IO) { send(method, url, body, listOf(payment.header), client) }
    return Paid(retry, payment)
}

// ------------------------------------------------------------------------------------------
// Tests

/** `tls*`: the same over HTTPS with certificates from a CA made for this run (`caPem`); the
 *  `expired`/`wrongHost` facilitators present certificates the library must refuse. */
class Ctx(
    val facilitator: String,
    val api: String,
    val vectors: File,
    val caPem: String,
    val tlsFacilitator: String,
    val tlsApi: String,
    val expiredFacilitator: String,
    val wrongHostFacilitator: String,
    /** A relay in front of a second facilitator (which charges), and a paid API naming it. */
    val relay: Relay,
    val relayFacilitator: String,
    val relayApi: String,
    /** Live mode (`vlexivo demo --live --serve`): its VLX_* settings and a live paid API. */
    val live: Map<String, String>,
    val liveApi: String,
)

/** Forwards every request to `upstream` (a real facilitator); while `lie` is set, answers
 *  payments 502 after forwarding them. Counts the requests it saw. */
class Relay {
    @Volatile var upstream = ""
    @Volatile var lie = true
    val seen: MutableList<String> = java.util.Collections.synchronizedList(ArrayList())
    private val server = com.sun.net.httpserver.HttpServer.create(java.net.InetSocketAddress("127.0.0.1", 0), 0)
    val url: String = "http://127.0.0.1:${server.address.port}"

    init {
        server.executor = java.util.concurrent.Executors.newFixedThreadPool(4)
        server.createContext("/") { ex ->
            val body = ex.requestBody.readBytes()
            val path = ex.requestURI.toString()
            seen.add("${ex.requestMethod} $path")
            val b = HttpRequest.newBuilder(URI.create(upstream + path)).timeout(Duration.ofSeconds(30))
                .header("content-type", "application/json")
            b.method(ex.requestMethod, if (body.isEmpty()) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofByteArray(body))
            val up = http.send(b.build(), HttpResponse.BodyHandlers.ofByteArray())
            val (status, out) = if (path == "/v1/payments" && lie) 502 to "<html>bad gateway</html>".toByteArray() else up.statusCode() to up.body()
            ex.sendResponseHeaders(status, out.size.toLong())
            ex.responseBody.use { it.write(out) }
        }
        server.start()
    }

    fun payments() = seen.count { it == "POST /v1/payments" }
    fun stop() = server.stop(0)
}

val tests = LinkedHashMap<String, suspend (Ctx) -> Unit>()

fun test(name: String, body: suspend (Ctx) -> Unit) {
    tests[name] = body
}

fun registerTests() {
    test("vectors: wallet addresses from keys") { ctx ->
        val cases = readJson(File(ctx.vectors, "wallet.json"))["cases"].list().map { it.obj() }
            .filter { it["op"] == "address" }
        check(cases.isNotEmpty()) { "no address cases" }
        for (c in cases) {
            val expect = c["expect"].obj()
            val key = c["private_key"] as String
            if (expect.containsKey("error")) {
                val e = expectThrows<VlexivoException.Wallet> { Wallet.fromKey(key) }
                eq(e.code, expect["error"], "${c["name"]}: code")
            } else {
                eq(Wallet.fromKey(key).address(), expect["address"], "${c["name"]}: address")
            }
        }
    }

    test("vectors: challenge decoding") { ctx ->
        val cases = readJson(File(ctx.vectors, "challenge.json"))["cases"].list().map { it.obj() }
        check(cases.size >= 10) { "too few challenge cases" }
        for (c in cases) {
            val expect = c["expect"].obj()
            val name = c["name"]
            if (expect["decode"] == "ok") {
                val ch = decodeChallenge(c["encoded"] as String)
                val f = expect["fields"].obj()
                eq(ch.price, f["amount"], "$name: price")
                eq(ch.currency, f["currency"], "$name: currency")
                eq(ch.method, f["method"], "$name: method")
                eq(ch.path, f["path"], "$name: path")
                eq(ch.account, f["account"], "$name: account")
                eq(ch.nonce, f["nonce"], "$name: nonce")
                eq(ch.expiresAt.toLong(), f["exp"], "$name: exp")
                eq(ch.encoded, c["encoded"], "$name: encoded")
            } else {
                try {
                    decodeChallenge(c["encoded"] as String)
                    throw AssertionFailed("$name: decoded, expected ${expect["decode"]}")
                } catch (e: VlexivoException) {
                    eq(e.code, expect["decode"], "$name: code")
                }
            }
        }
    }

    fun payments(file: Map<String, Any?>, config: Map<String, Any?>, now: Long): VlexivoPayments {
        val auto = config["auto_top_up"]?.obj()
        return VlexivoPayments(
            wallet = Wallet.fromKey(file["private_key"] as String),
            policy = SpendingPolicy(maxPerCall = config["max_per_call"] as String?, maxTotal = config["max_total"] as String?),
            autoTopUp = auto?.let { AutoTopUp(triggerBalance = it["trigger_balance"] as String, topUpAmount = it["top_up_amount"] as String) },
            facilitators = config["trusted"].list().map { it as String },
            fixedNow = now.toULong(),
        )
    }

    test("vectors: client 402 parsing and payment quotes") { ctx ->
        val file = readJson(File(ctx.vectors, "client.json"))
        val cases = file["cases"].list().map { it.obj() }.filter { it["op"] == "quote" }
        check(cases.size >= 12) { "too few client cases" }
        for (c in cases) {
            val name = c["name"]
            val resp = c["response"].obj()
            val req = c["request"].obj()
            val expect = c["expect"].obj()
            val status = (resp["status"] as Long).toInt().toUShort()
            val headers = resp["headers"].list().map { val h = it.list(); HttpHeader(h[0] as String, h[1] as String) }
            val body = (resp["body"] as String).toByteArray()
            val payments = payments(file, c["config"].obj(), c["now"] as Long)
            try {
                val q = payments.quote(status, headers, body, req["method"] as String, req["url"] as String)
                check(!expect.containsKey("error")) { "$name: quoted, expected ${expect["error"]}" }
                eq(q.price, expect["price"], "$name: price")
                eq(q.currency, expect["currency"], "$name: currency")
                eq(q.nonce, expect["nonce"], "$name: nonce")
                eq(q.payUrl, expect["pay_url"], "$name: pay_url")
                eq(Json(q.paymentRequest).parse(), expect["payment_request"], "$name: payment_request")
                // The same response through the plain parser agrees.
                eq(parsePaymentRequired(status, headers, body).price, q.price, "$name: parsed price")
                // A quote reserves nothing: the budget is untouched.
                eq(payments.reservedTotal(), "0", "$name: reserved")
            } catch (e: VlexivoException) {
                eq(e.code, expect["error"], "$name: code (${e.message})")
            } finally {
                payments.close()
            }
        }
    }

    test("vectors: the payer flow, exchange by exchange (PaymentFlow)") { ctx ->
        val file = readJson(File(ctx.vectors, "client.json"))
        val flows = file["cases"].list().map { it.obj() }.filter { it["op"] == "flow" }
        check(flows.size >= 9) { "too few flows" }
        fun feed(flow: PaymentFlow, input: Map<String, Any?>): Any? {
            val (kind, v0) = input.entries.single()
            val v = v0.obj()
            val step = try {
                when (kind) {
                    "start" -> flow.start()
                    "response" -> flow.response(
                        (v["status"] as Long).toInt().toUShort(),
                        v["headers"].list().map { val h = it.list(); HttpHeader(h[0] as String, h[1] as String) },
                        (v["body"] as String?)?.toByteArray(),
                        v["url"] as String?,
                    )
                    "answer" -> flow.answer((v["status"] as Long).toInt().toUShort(), (v["body"] as String).toByteArray())
                    "transport_error" -> flow.transportError(v["sent"] as Boolean, "vector")
                    "resume" -> flow.resume()
                    else -> throw AssertionFailed("input $kind")
                }
            } catch (e: VlexivoException) {
                return mapOf("error" to e.code)
            }
            return when (step) {
                is FlowStep.Send -> mapOf("send" to mapOf("url" to step.url, "proof" to step.headers.firstOrNull { it.name == proofHeaderName() }?.value))
                is FlowStep.ReadBody -> mapOf("read_body" to mapOf("limit" to step.limit.toLong()))
                is FlowStep.Facilitator -> mapOf("facilitator" to mapOf("method" to step.call.method, "url" to step.call.url, "body" to step.call.body))
                is FlowStep.Paid -> mapOf("paid" to mapOf("price" to step.event.price, "nonce" to step.event.nonce,
                    "replayed" to step.event.replayed, "topped_up" to step.event.toppedUp, "reconciled" to step.event.reconciled))
                is FlowStep.Wait -> mapOf("wait" to emptyMap<String, Any?>())
                FlowStep.Return -> mapOf("return" to emptyMap<String, Any?>())
            }
        }
        for (c in flows) {
            val name = c["name"]
            payments(file, c["config"].obj(), c["now"] as Long).use { p ->
                for (call in c["calls"].list().map { it.obj() }) {
                    val flow = p.flow(call["method"] as String, call["url"] as String, call["replayable"] as Boolean)
                    call["exchanges"].list().forEachIndexed { i, ex ->
                        eq(feed(flow, ex.obj()["input"].obj()), ex.obj()["expect"], "$name: exchange $i")
                    }
                }
                val b = c["expect_budget"].obj()
                eq(mapOf("spent" to p.spentTotal(), "reserved" to p.reservedTotal(), "in_doubt" to p.inDoubtTotal()), b, "$name: budget")
            }
        }
    }

    test("errors: every core code has one of core's categories, and header names are core's") { _ ->
        val codes = errorCodes()
        check(codes.size >= 40 && codes.toSet().size == codes.size) { "codes: $codes" }
        check("insufficient_funds" in codes && "budget_exceeded" in codes) { "missing codes" }
        val categories = errorCategories()
        eq(categories.toSet(), setOf("amount", "challenge", "wallet", "proof", "payment", "facilitator",
            "nonce_store", "request", "config", "internal"), "the categories VlexivoException.category knows")
        for (code in codes) check(errorCategory(code) in categories) { "$code: ${errorCategory(code)}" }
        eq(errorCategory("no_such_code"), null, "unknown code")
        // A thrown error's variant is its code's category.
        val e = expectThrows<VlexivoException> { Wallet.fromKey("0x1234") }
        eq(e.category, errorCategory(e.code), "category of ${e.code}")
        eq(proofHeaderName(), "Vlexivo-Proof")
        val h = headerNames()
        eq(listOf(h.challenge, h.proof, h.receipt), listOf("Vlexivo-Challenge", "Vlexivo-Proof", "Vlexivo-Receipt"), "header names")
    }

    test("wallet: generate, export and restore") { _ ->
        val w = Wallet.generate()
        check(Regex("^0x[0-9a-fA-F]{40}$").matches(w.address())) { "address ${w.address()}" }
        eq(Wallet.fromKey(w.secretKeyHex()).address(), w.address(), "restored address")
        check(Wallet.generate().address() != w.address()) { "two fresh wallets collide" }
        val e = expectThrows<VlexivoException.Wallet> { Wallet.fromKey("0x1234") }
        eq(e.code, "wallet_key_invalid")
        check(!e.message!!.contains("1234")) { "error echoes the key" }
    }

    test("config: bad policy, bad amounts, no facilitator yet, facilitator down") { ctx ->
        val w = Wallet.generate()
        eq(expectThrows<VlexivoException.Amount> { VlexivoPayments(w, SpendingPolicy(maxPerCall = "abc")) }.code, "amount_malformed")
        eq(expectThrows<VlexivoException.Config> { VlexivoPayments(w, SpendingPolicy(windowSeconds = 60uL)) }.code, "config_invalid")
        eq(expectThrows<VlexivoException.Config> { VlexivoPayments(w, facilitatorUrl = "ftp://x") }.code, "config_invalid")
        eq(expectThrows<VlexivoException.Amount> {
            VlexivoPayments(w, autoTopUp = AutoTopUp(triggerBalance = "1", topUpAmount = "0"))
        }.code, "amount_zero")
        VlexivoPayments(w).use { p ->
            // Nothing configured (and no VLX_FACILITATOR_URL): the default local facilitator.
            eq(p.facilitatorUrl(), "http://127.0.0.1:4020", "default facilitator")
            eq(p.facilitators(), listOf("http://127.0.0.1:4020"), "trusted")
        }
        eq(expectThrows<VlexivoException.Config> { VlexivoPayments(w, facilitators = listOf("nope")) }.code, "config_invalid")
        VlexivoPayments(w, facilitatorUrl = ctx.facilitator).use { p ->
            eq(expectThrows<VlexivoException.Amount> { p.topUp("-1") }.code, "amount_negative")
            eq(p.balance(), "0", "fresh wallet balance")
        }
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        VlexivoPayments(w, facilitatorUrl = "http://127.0.0.1:9").use { p ->
            eq(expectThrows<VlexivoException.Facilitator> { p.balance() }.code, "facilitator_unavailable")
        }
    }

    test("live mode: the Kotlin client pays on chain (EIP-3009); balances move payer -> payout exactly") { ctx ->
        val live = ctx.live
        val w = Wallet.fromKey(live.getValue("VLX_WALLET_KEY"))
        val payTo = live.getValue("VLX_PAY_TO")
        val payerBefore = tokenBalance(live, w.address())
        val payoutBefore = tokenBalance(live, payTo)
        VlexivoPayments(w, facilitatorUrl = live.getValue("VLX_FACILITATOR_URL")).use { p ->
            val hashes = HashSet<String>()
            repeat(2) { i ->
                val r = paidCall(p, "GET", "${ctx.liveApi}/v1/quote?i=$i")
                eq(r.response.statusCode(), 200, "status after paying live")
                eq(r.payment!!.price, "0.001", "price")
                hashes.add(r.payment!!.txHash)
            }
            eq(hashes.size, 2, "one transaction per call")
        }
        // Automine: each relay is in a block by the time it is read.
        eq(payerBefore - tokenBalance(live, w.address()), java.math.BigInteger.valueOf(2000), "payer paid on chain")
        eq(tokenBalance(live, payTo) - payoutBefore, java.math.BigInteger.valueOf(2000), "payout received on chain")
    }

    test("live verifyPayment: the payment verifies on chain from the challenge's asset and payTo; each wrong expectation has its code; the RPC URL never shows") { ctx ->
        val live = ctx.live
        val rpcUrl = live.getValue("VLX_RPC_URL")
        val w = Wallet.fromKey(live.getValue("VLX_WALLET_KEY"))
        val url = "${ctx.liveApi}/v1/quote?verify"
        val challenge = send("GET", url).let { parsePaymentRequired(it.statusCode().toUShort(), it.headerList(), it.body()) }
        eq(listOf(challenge.mode, challenge.asset, challenge.payTo), listOf("live", live.getValue("VLX_ASSET"), live.getValue("VLX_PAY_TO")), "a live challenge names its token and payout")
        val txHash = VlexivoPayments(w, facilitatorUrl = live.getValue("VLX_FACILITATOR_URL")).use { p ->
            val r = paidCall(p, "GET", url)
            eq(r.response.statusCode(), 200, "paid")
            r.payment!!.txHash
        }
        val expect = PaymentExpectation(token = challenge.asset!!, payer = w.address(), payee = challenge.payTo!!, amount = challenge.price)
        val v = verifyPayment(txHash, expect, rpcUrl)
        eq(listOf(v.txHash, v.payer, v.payee, v.token, v.amount), listOf(txHash, w.address(), challenge.payTo, challenge.asset, "0.001"), "verified")
        check(v.block > 0uL && v.confirmations >= 1uL && v.gasUsed > 0uL && v.transfers >= 1u && !v.authorizationChecked) { "$v" }
        suspend fun code(hash: String, e: PaymentExpectation, rpc: String = rpcUrl): String =
            expectThrows<VlexivoException> { verifyPayment(hash, e, rpc) }.code
        eq(code(txHash, expect.copy(amount = "0.002")), "transfer_mismatch", "a wrong amount")
        eq(code(txHash, expect.copy(payee = w.address())), "transfer_mismatch", "a wrong payee")
        eq(code(txHash, expect.copy(confirmations = 10_000uL)), "confirmations_pending", "not deep enough")
        eq(code("0x" + "ab".repeat(32), expect), "transaction_not_found", "an unknown hash")
        eq(code("0x1234", expect), "request_malformed", "a malformed hash")
        eq(code(txHash, expect.copy(amount = "-1")), "amount_negative", "a negative amount")
        val port = java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()).use { it.localPort }
        val down = expectThrows<VlexivoException> { verifyPayment(txHash, expect, "http://127.0.0.1:$port/v3/key-s3cr3t") }
        eq(down.code, "chain_unavailable", "the node down")
        check("s3cr3t" !in down.toString() && "s3cr3t" !in (down.message ?: "")) { "the RPC URL is in the error: $down" }
    }

    test("live auto top-up: a payer short of funds is topped up on chain from its funding wallet, once, then pays; the cap and an empty funding wallet refuse with their codes, nothing paid") { ctx ->
        val live = ctx.live
        val fac = live.getValue("VLX_FACILITATOR_URL")
        val payTo = live.getValue("VLX_PAY_TO")
        // The funding wallet: the demo's funded payer, given gas for the transfers it sends.
        val funderKey = live.getValue("VLX_WALLET_KEY")
        val funder = Wallet.fromKey(funderKey).address()
        val oneEth = "0xde0b6b3a7640000"
        rpc(live, "anvil_setBalance", """["$funder","$oneEth"]""")
        val rule = AutoTopUp(
            triggerBalance = "0", topUpAmount = "0.01", fundingWalletKey = funderKey, rpcUrl = live.getValue("VLX_RPC_URL"),
        )
        val funderBefore = tokenBalance(live, funder)
        val payoutBefore = tokenBalance(live, payTo)
        val payer = Wallet.generate()
        VlexivoPayments(payer, SpendingPolicy(), autoTopUp = rule, facilitatorUrl = fac).use { p ->
            val toppedUp = (0 until 2).map { i ->
                val r = paidCall(p, "GET", "${ctx.liveApi}/v1/quote?topup=$i")
                eq(r.response.statusCode(), 200, "status after paying live")
                r.payment!!.toppedUp
            }
            eq(toppedUp, listOf("0.01", null), "one top-up, before the first payment")
        }
        eq(funderBefore - tokenBalance(live, funder), java.math.BigInteger.valueOf(10000), "the funding wallet sent 0.01")
        eq(tokenBalance(live, payer.address()), java.math.BigInteger.valueOf(8000), "the payer: 0.01 less two calls")

        suspend fun refused(autoTopUp: AutoTopUp, tag: String): VlexivoException {
            VlexivoPayments(Wallet.generate(), SpendingPolicy(), autoTopUp = autoTopUp, facilitatorUrl = fac).use { p ->
                val url = "${ctx.liveApi}/v1/quote?$tag"
                val first = send("GET", url)
                eq(first.statusCode(), 402, "first status")
                val e = expectThrows<VlexivoException> { p.pay(402u, first.headerList(), first.body(), "GET", url) }
                eq(p.spentTotal(), "0", "nothing spent")
                return e
            }
        }
        // Over the cap: refused, nothing sent, nothing paid.
        val capped = refused(rule.copy(maxTotal = "0.0005"), "cap")
        check(capped is VlexivoException.Payment && capped.code == "top_up_refused" && "capped at 0.0005" in capped.message!!) {
            "over the cap: $capped"
        }
        // A funding wallet without the token: funding_insufficient with the amounts, never its key.
        val empty = Wallet.generate()
        rpc(live, "anvil_setBalance", """["${empty.address()}","$oneEth"]""")
        val short = refused(rule.copy(fundingWalletKey = empty.secretKeyHex()), "empty")
        check(short is VlexivoException.InsufficientFunds) { "empty funding wallet: $short" }
        short as VlexivoException.InsufficientFunds
        eq(listOf(short.code, short.required, short.balance, short.currency), listOf("funding_insufficient", "0.01", "0", "usd"))
        check(empty.secretKeyHex().removePrefix("0x") !in short.toString()) { "the funding key is in the error" }
        // A key without an RPC URL (and none in the environment) is a configuration error.
        if (System.getenv("VLX_RPC_URL") == null) {
            eq(expectThrows<VlexivoException.Config> {
                VlexivoPayments(Wallet.generate(), SpendingPolicy(), autoTopUp = rule.copy(rpcUrl = null), facilitatorUrl = fac)
            }.code, "config_invalid")
        }
        eq(funderBefore - tokenBalance(live, funder), java.math.BigInteger.valueOf(10000), "no other top-up sent")
        eq(tokenBalance(live, payTo) - payoutBefore, java.math.BigInteger.valueOf(2000), "the two paid calls only")
    }

    test("paid call: 402, pay, retry with the header, 200; a replay is refused") { ctx ->
        val w = Wallet.generate()
        VlexivoPayments(w, facilitatorUrl = ctx.facilitator).use { p ->
            val t = p.topUp("1")
            eqAmount(t.balance, "1", "balance after top-up")
            check(!t.txHash.isNullOrEmpty()) { "top-up tx hash" }
            val url = "${ctx.api}/v1/quote"
            val r = paidCall(p, "GET", url)
            eq(r.response.statusCode(), 200, "status after paying")
            val pay = r.payment!!
            eq(pay.header.name, "Vlexivo-Proof", "header name")
            eq(pay.price, "0.001", "price")
            eq(pay.currency, "usd", "currency")
            eqAmount(pay.balanceAfter, "0.999", "balance after")
            eq(pay.payer, w.address(), "payer")
            eq(pay.replayed, false, "replayed")
            eq(pay.toppedUp, null, "topped up")
            check(pay.txHash.isNotEmpty()) { "tx hash" }
            val receipt = r.response.headers().firstValue("vlexivo-receipt").orElse("")
            check(receipt.contains("tx=${pay.txHash}")) { "receipt header: $receipt" }
            val body = Json(String(r.response.body())).parse().obj()
            eq(body["payer"], w.address(), "handler saw the payer")
            eqAmount(p.balance(), "0.999", "balance() after")
            eq(p.spentTotal(), "0.001", "spent")
            // The same proof again: the paywall refuses a second run.
            val again = withContext(Dispatchers.IO) { send("GET", url, null, listOf(pay.header)) }
            eq(again.statusCode(), 409, "replayed proof status")
            eq(Json(String(again.body())).parse().obj()["error"], "token_replayed", "replayed proof code")
        }
    }

    test("paid POST: the body is replayed, the price follows the model") { ctx ->
        VlexivoPayments(Wallet.generate(), facilitatorUrl = ctx.facilitator).use { p ->
            p.topUp("1")
            val url = "${ctx.api}/api/v1/inference"
            val large = paidCall(p, "POST", url, """{"model":"large-v2","prompt":"hi"}""".toByteArray())
            eq(large.response.statusCode(), 200, "status")
            eq(large.payment!!.price, "0.01", "large price")
            eq(Json(String(large.response.body())).parse().obj()["result"], "echo: hi", "handler got the body")
            val embed = paidCall(p, "POST", url, """{"model":"embed-small","prompt":"x"}""".toByteArray())
            eq(embed.payment!!.price, "0.0001", "embed price")
            eqAmount(p.balance(), "0.9899", "balance")
            eq(p.spentTotal(), "0.0101", "spent")
        }
    }

    test("insufficient funds: the exact amount required and the balance") { ctx ->
        VlexivoPayments(Wallet.generate(), facilitatorUrl = ctx.facilitator).use { p ->
            val first = send("GET", "${ctx.api}/v1/quote")
            eq(first.statusCode(), 402, "first status")
            val e = expectThrows<VlexivoException.InsufficientFunds> {
                p.pay(402u, first.headerList(), first.body(), "GET", "${ctx.api}/v1/quote")
            }
            eq(e.code, "insufficient_funds")
            eq(e.required, "0.001", "required")
            eqAmount(e.balance, "0", "balance")
            eq(e.currency, "usd", "currency")
            eq(p.spentTotal(), "0", "nothing spent")
            eq(p.reservedTotal(), "0", "a clear refusal releases the reservation")
        }
    }

    test("budget: per-call and window caps refuse before paying") { ctx ->
        VlexivoPayments(
            Wallet.generate(),
            SpendingPolicy(maxPerCall = "0.005", windowSeconds = 3600uL, windowMax = "0.002"),
            facilitatorUrl = ctx.facilitator,
        ).use { p ->
            p.topUp("1")
            val url = "${ctx.api}/api/v1/inference"
            val body = """{"model":"large"}""".toByteArray()
            val r = send("POST", url, body)
            val e = expectThrows<VlexivoException.BudgetExceeded> { p.pay(402u, r.headerList(), r.body(), "POST", url) }
            eq(e.code, "budget_exceeded")
            eq(e.limit, "per_call", "limit")
            eq(e.requested, "0.01", "requested")
            eq(e.remaining, "0.005", "remaining")
            eqAmount(p.balance(), "1", "nothing debited")
            repeat(2) { eq(paidCall(p, "GET", "${ctx.api}/v1/quote").response.statusCode(), 200, "call ${it + 1}") }
            val q = send("GET", "${ctx.api}/v1/quote")
            val w = expectThrows<VlexivoException.BudgetExceeded> { p.pay(402u, q.headerList(), q.body(), "GET", "${ctx.api}/v1/quote") }
            eq(w.limit, "window", "limit")
            eq(w.remaining, "0", "remaining")
            eq(p.spentTotal(), "0.002", "spent")
        }
    }

    test("auto top-up: an empty wallet is topped up before paying, once") { ctx ->
        VlexivoPayments(
            Wallet.generate(),
            autoTopUp = AutoTopUp(enabled = true, triggerBalance = "1.00", topUpAmount = "10.00"),
            facilitatorUrl = ctx.facilitator,
        ).use { p ->
            val first = paidCall(p, "GET", "${ctx.api}/v1/quote")
            eq(first.response.statusCode(), 200, "status")
            eqAmount(first.payment!!.toppedUp ?: "none", "10", "topped up")
            eqAmount(first.payment!!.balanceAfter, "9.999", "balance after")
            val second = paidCall(p, "GET", "${ctx.api}/v1/quote")
            eq(second.payment!!.toppedUp, null, "second call tops up nothing")
            eqAmount(p.balance(), "9.998", "balance")
        }
    }

    test("auto top-up: a stale balance is corrected by the facilitator's answer") { ctx ->
        val w = Wallet.generate()
        val rule = AutoTopUp(triggerBalance = "0.5", topUpAmount = "2")
        VlexivoPayments(w, autoTopUp = rule, facilitatorUrl = ctx.facilitator).use { p ->
            eqAmount(p.topUp("5").balance, "5", "balance after top-up")
            // Another device spends the same wallet: this client still believes it holds 5.
            VlexivoPayments(w, facilitatorUrl = ctx.facilitator).use { other ->
                eq(paidCall(other, "GET", "${ctx.api}/v1/expensive").response.statusCode(), 200, "other device")
            }
            val r = paidCall(p, "GET", "${ctx.api}/v1/quote")
            eq(r.response.statusCode(), 200, "status")
            eqAmount(r.payment!!.toppedUp ?: "none", "2", "topped up after the facilitator's answer")
            eqAmount(r.payment!!.balanceAfter, "1.999", "balance after")
        }
        // A price above topUpAmount: the shortfall is added instead.
        VlexivoPayments(Wallet.generate(), autoTopUp = rule, facilitatorUrl = ctx.facilitator).use { p ->
            val r = paidCall(p, "GET", "${ctx.api}/v1/expensive")
            eq(r.response.statusCode(), 200, "status")
            eqAmount(r.payment!!.toppedUp ?: "none", "5", "topped up the shortfall")
            eqAmount(r.payment!!.balanceAfter, "0", "balance after")
        }
    }

    test("not a 402, a challenge for another facilitator, a refused top-up") { ctx ->
        VlexivoPayments(Wallet.generate(), facilitatorUrl = ctx.facilitator).use { p ->
            val free = send("GET", "${ctx.api}/free")
            eq(free.statusCode(), 200, "free status")
            eq(expectThrows<VlexivoException.NotPaymentRequired> {
                p.pay(200u, free.headerList(), free.body(), "GET", "${ctx.api}/free")
            }.code, "not_payment_required")
            val over = expectThrows<VlexivoException.Payment> { p.topUp("5000") }
            eq(over.code, "top_up_refused")
            eq(over.category, "payment")
            eq(over.status.toInt(), 403, "status")
        }
        VlexivoPayments(Wallet.generate(), facilitatorUrl = "http://127.0.0.1:9").use { p ->
            val r = send("GET", "${ctx.api}/v1/quote")
            eq(expectThrows<VlexivoException.Challenge> {
                p.pay(402u, r.headerList(), r.body(), "GET", "${ctx.api}/v1/quote")
            }.code, "facilitator_untrusted")
        }
        VlexivoPayments(Wallet.generate(), facilitatorUrl = ctx.facilitator).use { p ->
            // The challenge is for GET /v1/quote, not POST.
            val r = send("GET", "${ctx.api}/v1/quote")
            eq(expectThrows<VlexivoException.Challenge> {
                p.pay(402u, r.headerList(), r.body(), "POST", "${ctx.api}/v1/quote")
            }.code, "challenge_mismatch")
        }
    }

    test("tls: an HTTPS API paid through an HTTPS facilitator with a private CA") { ctx ->
        val app = trustingClient(ctx.caPem)
        val w = Wallet.generate()
        for (roots in listOf(TrustRoots.AUTO, TrustRoots.WEB_PKI, TrustRoots.PLATFORM)) {
            val tls = TlsOptions(roots = roots, caPem = ctx.caPem, httpsOnly = true)
            VlexivoPayments(w, facilitatorUrl = ctx.tlsFacilitator, tls = tls).use { p ->
                if (roots == TrustRoots.AUTO) eqAmount(p.topUp("1").balance, "1", "top-up over https")
                val r = paidCall(p, "GET", "${ctx.tlsApi}/v1/quote", client = app)
                eq(r.response.statusCode(), 200, "$roots: status after paying over https")
                check(r.payment!!.txHash.isNotEmpty()) { "tx hash" }
            }
        }
        VlexivoPayments(w, facilitatorUrl = ctx.tlsFacilitator, tls = TlsOptions(caPem = ctx.caPem)).use { p ->
            eqAmount(p.balance(), "0.997", "three paid calls")
        }
    }

    test("tls: untrusted, expired and wrong-host certificates; https only; a bad CA") { ctx ->
        val w = Wallet.generate()
        suspend fun refused(url: String, tls: TlsOptions?, says: String) {
            VlexivoPayments(w, facilitatorUrl = url, tls = tls).use { p ->
                val e = expectThrows<VlexivoException.Facilitator> { p.balance() }
                eq(e.code, "facilitator_unavailable", "$says: code")
                check(e.message!!.contains(says) && e.message!!.contains(url)) { "$says: ${e.message}" }
            }
        }
        refused(ctx.tlsFacilitator, null, "untrusted authority")
        refused(ctx.tlsFacilitator, TlsOptions(roots = TrustRoots.PLATFORM), "untrusted authority")
        refused(ctx.expiredFacilitator, TlsOptions(caPem = ctx.caPem), "expired certificate")
        refused(ctx.wrongHostFacilitator, TlsOptions(caPem = ctx.caPem), "another host name")
        // The plain-http API names a plain-http facilitator: refused before signing.
        VlexivoPayments(w, facilitatorUrl = ctx.facilitator, tls = TlsOptions(httpsOnly = true)).use { p ->
            val r = send("GET", "${ctx.api}/v1/quote")
            val e = expectThrows<VlexivoException.Challenge> {
                p.pay(402u, r.headerList(), r.body(), "GET", "${ctx.api}/v1/quote")
            }
            eq(e.code, "facilitator_untrusted", "https only")
            eq(p.spentTotal(), "0", "nothing spent")
        }
        eq(expectThrows<VlexivoException.Config> {
            VlexivoPayments(w, tls = TlsOptions(caPem = "not a certificate"))
        }.code, "config_invalid")
    }

    test("item 6/7: a 402 naming a facilitator the client does not trust: nothing signed, queried or paid") { ctx ->
        val w = Wallet.generate()
        VlexivoPayments(w, facilitatorUrl = ctx.relayFacilitator).use { it.topUp("1") }
        val before = ctx.relay.seen.size
        for (auto in listOf(null, AutoTopUp(triggerBalance = "1.00", topUpAmount = "10.00"))) {
            // Unconfigured (item 6), and pinned to the real facilitator with auto top-up (item 7).
            val pinned = if (auto == null) null else ctx.relayFacilitator
            VlexivoPayments(w, SpendingPolicy(maxTotal = "0.001"), autoTopUp = auto, facilitatorUrl = pinned).use { p ->
                val r = send("GET", "${ctx.relayApi}/v1/quote")
                val e = expectThrows<VlexivoException.Challenge> { p.pay(402u, r.headerList(), r.body(), "GET", "${ctx.relayApi}/v1/quote") }
                eq(e.code, "facilitator_untrusted")
                eq(p.reservedTotal(), "0", "nothing reserved")
            }
        }
        eq(ctx.relay.seen.size, before, "the relay saw nothing: no payment, no balance query, no top-up")
        VlexivoPayments(w, facilitatorUrl = ctx.relayFacilitator).use { eqAmount(it.balance(), "1", "nothing paid") }
    }

    test("item 13: a payment answered 502 stays counted until the facilitator tells its fate") { ctx ->
        ctx.relay.lie = true
        val w = Wallet.generate()
        VlexivoPayments(w, facilitatorUrl = ctx.relayFacilitator).use { it.topUp("1") }
        try {
            VlexivoPayments(w, SpendingPolicy(maxTotal = "0.001"), facilitatorUrl = ctx.relay.url).use { p ->
                val url = "${ctx.relayApi}/v1/quote"
                var r = send("GET", url)
                val e = expectThrows<VlexivoException.Payment> { p.pay(402u, r.headerList(), r.body(), "GET", url) }
                eq(e.code, "payment_in_doubt")
                eq(listOf(p.spentTotal(), p.reservedTotal(), p.inDoubtTotal()), listOf("0", "0.001", "0.001"), "counted, in doubt")
                VlexivoPayments(w, facilitatorUrl = ctx.relayFacilitator).use { eqAmount(it.balance(), "0.999", "charged once") }
                // The next 402: the in-doubt payment is sent again first (502 again), then the cap refuses.
                r = send("POST", "${ctx.relayApi}/api/v1/inference", """{"model":"x"}""".toByteArray())
                eq(expectThrows<VlexivoException.BudgetExceeded> {
                    p.pay(402u, r.headerList(), r.body(), "POST", "${ctx.relayApi}/api/v1/inference")
                }.limit, "total", "limit")
                // The relay tells the truth: the payment is settled, and its proof serves /v1/quote.
                ctx.relay.lie = false
                val paid = paidCall(p, "GET", url)
                eq(paid.response.statusCode(), 200, "status")
                eq(paid.payment!!.reused, true, "the proof bought by the in-doubt payment")
                eq(listOf(p.spentTotal(), p.reservedTotal(), p.inDoubtTotal()), listOf("0.001", "0", "0"), "settled")
                VlexivoPayments(w, facilitatorUrl = ctx.relayFacilitator).use { eqAmount(it.balance(), "0.999", "paid once in all") }
            }
        } finally {
            ctx.relay.lie = true
        }
    }

    test("item 9: after the API's 5xx, reportRetry keeps the proof and the next pay reuses it") { ctx ->
        val w = Wallet.generate()
        VlexivoPayments(w, facilitatorUrl = ctx.facilitator).use { p ->
            p.topUp("1")
            val url = "${ctx.api}/v1/flaky"
            val first = paidCall(p, "GET", url)
            eq(first.response.statusCode(), 500, "first status")
            p.reportRetry(first.payment!!.nonce, 500u)
            val second = paidCall(p, "GET", url)
            eq(second.response.statusCode(), 200, "second status")
            eq(second.payment!!.reused, true, "reused")
            eq(second.payment!!.nonce, first.payment!!.nonce, "the same payment")
            eqAmount(p.balance(), "0.998", "paid once")
            eq(p.spentTotal(), "0.002", "spent")
        }
    }

    test("cancellation: a cancelled pay() completes on the runtime; budget and ledger agree") { ctx ->
        VlexivoPayments(Wallet.generate(), facilitatorUrl = ctx.facilitator).use { p ->
            p.topUp("1")
            val url = "${ctx.api}/v1/quote"
            val r = send("GET", url)
            kotlinx.coroutines.coroutineScope {
                val job = launch(Dispatchers.IO) { p.pay(402u, r.headerList(), r.body(), "GET", url) }
                delay(1)
                job.cancel()
            }
            // Whether the cancel came before or after the facilitator charged, what the budget
            // counts as spent is what left the wallet, once the cancelled pay() is over on the
            // runtime (nothing reserved any more; a loaded machine may take a while).
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
            var balance: String
            var spent: String
            while (true) {
                val reserved = p.reservedTotal()
                balance = p.balance()
                spent = p.spentTotal()
                if (dec(reserved).signum() == 0 && (dec(spent) + dec(balance)).compareTo(dec("1")) == 0) break
                check(System.nanoTime() < deadline) { "spent $spent + balance $balance != 1 (reserved $reserved) 30 s after the cancel" }
                delay(50)
            }
            println("     (cancelled pay: spent $spent)")
        }
    }

    test("concurrency: 20 parallel paid calls, 20 payments, exact balance") { ctx ->
        VlexivoPayments(Wallet.generate(), SpendingPolicy(maxTotal = "0.02"), facilitatorUrl = ctx.facilitator).use { p ->
            p.topUp("1")
            val results = kotlinx.coroutines.coroutineScope {
                (1..20).map { async(Dispatchers.IO) { paidCall(p, "GET", "${ctx.api}/v1/quote") } }.awaitAll()
            }
            eq(results.count { it.response.statusCode() == 200 }, 20, "paid calls")
            eq(results.map { it.payment!!.nonce }.toSet().size, 20, "distinct payments")
            eqAmount(p.balance(), "0.98", "balance")
            eq(p.spentTotal(), "0.02", "spent")
            // The total cap is now reached.
            val r = send("GET", "${ctx.api}/v1/quote")
            eq(expectThrows<VlexivoException.BudgetExceeded> {
                p.pay(402u, r.headerList(), r.body(), "GET", "${ctx.api}/v1/quote")
            }.limit, "total", "limit")
        }
    }
}

/** Loopback figures (not a test): N sequential paid calls, the share spent in `pay`, and
 *  `quote` (parse + checks + EIP-712 signature, no I/O) on one 402. */
fun bench(ctx: Ctx, n: Int) = runBlocking {
    VlexivoPayments(Wallet.generate(), facilitatorUrl = ctx.facilitator).use { p ->
        p.topUp("100")
        val url = "${ctx.api}/v1/quote"
        repeat(20) { paidCall(p, "GET", url) } // warm-up: JIT, connection pools
        var payNanos = 0L
        val t0 = System.nanoTime()
        repeat(n) {
            val first = send("GET", url)
            val tp = System.nanoTime()
            val paid = p.pay(402u, first.headerList(), first.body(), "GET", url)
            payNanos += System.nanoTime() - tp
            check(send("GET", url, null, listOf(paid.header)).statusCode() == 200) { "bench call failed" }
        }
        val total = System.nanoTime() - t0
        println("bench: $n sequential paid calls (402, pay, 200): %.2f ms/call, %.0f calls/s; pay() alone %.2f ms/call"
            .format(total / 1e6 / n, n / (total / 1e9), payNanos / 1e6 / n))
        val r = send("GET", url)
        val headers = r.headerList()
        val body = r.body()
        repeat(50) { p.quote(402u, headers, body, "GET", url) }
        val tq = System.nanoTime()
        repeat(n) { p.quote(402u, headers, body, "GET", url) }
        println("bench: quote() (parse, policy, EIP-712 sign; no I/O): %.3f ms/call".format((System.nanoTime() - tq) / 1e6 / n))
    }
}

fun argValue(args: Array<String>, name: String): String {
    val i = args.indexOf(name)
    require(i >= 0 && i + 1 < args.size) { "missing $name" }
    return args[i + 1]
}

fun main(args: Array<String>) {
    val vlexivo = argValue(args, "--vlexivo")
    val paidApi = argValue(args, "--paid-api")
    val testPki = argValue(args, "--test-pki")
    val vectors = File(argValue(args, "--vectors"))
    val only = args.indexOf("--only").takeIf { it >= 0 }?.let { args[it + 1] }
    // --bench N: after the tests, print loopback figures (N bounded to keep it short).
    val benchN = args.indexOf("--bench").takeIf { it >= 0 }?.let { args[it + 1].toInt().coerceIn(1, 2000) }
    val dir = Files.createTempDirectory("vlexivo-uniffi-tests").toFile()
    val services = ArrayList<Service>()
    Runtime.getRuntime().addShutdownHook(Thread { services.forEach { it.stop() } })

    var passed = 0
    var failed = 0
    try {
        val fac = startService("facilitator", listOf(vlexivo, "serve", "--addr", "127.0.0.1:0", "--db", File(dir, "f.db").path), listOf("VLEXIVO_URL"), dir)
        services.add(fac)
        val facilitator = fac.values.getValue("VLEXIVO_URL")
        val api = startService("paid-api", listOf(paidApi, facilitator), listOf("PAID_API_URL"), dir)
        services.add(api)

        // HTTPS: a CA made now, a facilitator and a paid API with its certificates, and two
        // facilitators whose certificates must be refused.
        val pkiDir = File(dir, "pki")
        check(ProcessBuilder(testPki, pkiDir.path).inheritIO().start().waitFor() == 0) { "test_pki failed" }
        fun tlsFacilitator(name: String): String {
            val cmd = listOf(vlexivo, "serve", "--addr", "127.0.0.1:0", "--db", File(dir, "$name.db").path,
                "--tls-cert", File(pkiDir, "$name.pem").path, "--tls-key", File(pkiDir, "$name-key.pem").path)
            val s = startService("facilitator-$name", cmd, listOf("VLEXIVO_URL"), dir)
            services.add(s)
            return s.values.getValue("VLEXIVO_URL")
        }
        val tlsFac = tlsFacilitator("good")
        val tlsApiCmd = ProcessBuilder(paidApi, tlsFac)
        tlsApiCmd.environment().putAll(mapOf(
            "PAID_API_TLS_CERT" to File(pkiDir, "good.pem").path,
            "PAID_API_TLS_KEY" to File(pkiDir, "good-key.pem").path,
            "VLX_CA_FILE" to File(pkiDir, "ca.pem").path,
        ))
        val tlsApi = startService("paid-api-tls", tlsApiCmd, listOf("PAID_API_URL"), dir)
        services.add(tlsApi)
        val relay = Relay()
        val relayedFac = startService("facilitator-relayed", listOf(vlexivo, "serve", "--addr", "127.0.0.1:0",
            "--db", File(dir, "relayed.db").path, "--public-url", relay.url), listOf("VLEXIVO_URL"), dir)
        services.add(relayedFac)
        relay.upstream = relayedFac.values.getValue("VLEXIVO_URL")
        val relayApi = startService("paid-api-relayed", listOf(paidApi, relay.url), listOf("PAID_API_URL"), dir)
        services.add(relayApi)
        Runtime.getRuntime().addShutdownHook(Thread { relay.stop() })
        // Live mode: anvil + USDC (FiatTokenV2_2) + a live facilitator and provider, and the paid
        // API as that provider, its settlement terms from the environment.
        val liveKeys = listOf("VLX_RPC_URL", "VLX_FACILITATOR_URL", "VLX_SECRET_KEY", "VLX_WALLET_KEY",
            "VLX_NETWORK", "VLX_ASSET", "VLX_ASSET_NAME", "VLX_ASSET_VERSION", "VLX_PAY_TO")
        val devnet = startService("devnet-live", listOf(vlexivo, "demo", "--live", "--serve"), liveKeys, dir)
        services.add(devnet)
        val liveApiCmd = ProcessBuilder(paidApi, devnet.values.getValue("VLX_FACILITATOR_URL"))
        liveApiCmd.environment().putAll(devnet.values.filterKeys { it != "VLX_WALLET_KEY" })
        val liveApi = startService("paid-api-live", liveApiCmd, listOf("PAID_API_URL"), dir)
        services.add(liveApi)
        val ctx = Ctx(
            facilitator, api.values.getValue("PAID_API_URL"), vectors,
            caPem = File(pkiDir, "ca.pem").readText(),
            tlsFacilitator = tlsFac,
            tlsApi = tlsApi.values.getValue("PAID_API_URL"),
            expiredFacilitator = tlsFacilitator("expired"),
            wrongHostFacilitator = tlsFacilitator("wrong-host"),
            relay = relay,
            relayFacilitator = relay.upstream,
            relayApi = relayApi.values.getValue("PAID_API_URL"),
            live = devnet.values,
            liveApi = liveApi.values.getValue("PAID_API_URL"),
        )
        println("facilitator $facilitator, paid API ${ctx.api}")

        registerTests()
        for ((name, body) in tests) {
            if (only != null && !name.contains(only)) continue
            val t0 = System.nanoTime()
            try {
                runBlocking { body(ctx) }
                passed++
                println("ok   $name (${(System.nanoTime() - t0) / 1_000_000} ms)")
            } catch (e: Throwable) {
                failed++
                println("FAIL $name: ${e::class.simpleName}: ${e.message}")
                if (e !is AssertionFailed) e.printStackTrace(System.out)
            }
        }
        if (benchN != null) bench(ctx, benchN)
    } catch (e: Throwable) {
        failed++
        println("FAIL setup: ${e.message}")
    } finally {
        services.forEach { it.stop() }
        services.clear()
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0 && passed > 0) 0 else 1)
}
