import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import SigV4
import WireFormat

/// `cinescale invocations`: the operator view of a gateway's durable queue — list invocations by state,
/// show one, re-drive a dead letter. Talks to the gateway's HTTP API, SigV4-signed like the Invoke API.
struct InvocationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invocations",
        abstract:
            "List, show and re-drive a gateway's asynchronous invocations (queued, running, failed, succeeded, dead).",
        subcommands: [List.self, Show.self, Redrive.self], defaultSubcommand: List.self)

    struct GatewayOptions: ParsableArguments {
        @Option(help: "Gateway endpoint (env CINESCALE_GATEWAY_ENDPOINT).")
        var gateway: String?

        @OptionGroup var credentialOptions: CredentialOptions

        func call(_ method: String, _ path: String, query: [(String, String)] = []) async throws -> (Int, Data) {
            let environment = ProcessInfo.processInfo.environment
            let base = gateway ?? environment["CINESCALE_GATEWAY_ENDPOINT"] ?? "http://127.0.0.1:9001"
            guard let url = URL(string: base), let host = url.host else {
                throw ValidationError("invalid gateway endpoint \(base)")
            }
            let authority = url.port.map { "\(host):\($0)" } ?? host
            let signer = SigV4Signer(
                credentials: credentialOptions.credentials(environment: environment),
                region: credentialOptions.resolvedRegion(environment: environment), service: "lambda")
            let headers = [(name: "host", value: authority)]
            let signed = signer.signedHeaders(
                for: SigningRequest(
                    method: method, path: path, query: query.map { (name: $0.0, value: $0.1) }, headers: headers),
                payload: .sha256([]), date: Date())
            let queryString = query.map {
                "\(S3URIEncoding.encode($0.0, encodeSlash: true))=\(S3URIEncoding.encode($0.1, encodeSlash: true))"
            }.joined(separator: "&")
            var request = HTTPClientRequest(
                url: base.trimmingSuffix("/") + path + (queryString.isEmpty ? "" : "?" + queryString))
            request.method = .init(rawValue: method)
            for (name, value) in signed { request.headers.add(name: name, value: value) }
            if method == "POST" { request.body = .bytes(ByteBuffer()) }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 64 << 20)
            return (Int(response.status.code), Data(body.readableBytesView))
        }

        static func object(_ data: Data) -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        }

        static func check(_ status: Int, _ data: Data) throws {
            guard (200..<300).contains(status) else {
                let error = object(data)["error"] as? [String: Any]
                let message =
                    error?["message"] as? String ?? object(data)["message"] as? String
                    ?? String(decoding: data, as: UTF8.self)
                throw ValidationError("gateway answered \(status): \(message)")
            }
        }

        static func printJSON(_ object: Any) {
            if let data = try? JSONSerialization.data(
                withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            {
                print(String(decoding: data, as: UTF8.self))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List invocations, newest first.")

        @Option(help: "Only these states, comma-separated: queued, running, failed, succeeded, dead.")
        var state: String?

        @Option(help: "Only this function.")
        var function: String?

        @Option(help: "At most this many (1...1000).")
        var limit: Int = 50

        @Flag(help: "Print the gateway's JSON instead of a table.")
        var json = false

        @OptionGroup var options: GatewayOptions

        func run() async throws {
            var query: [(String, String)] = [("limit", String(limit))]
            if let state { query.append(("state", state)) }
            if let function { query.append(("function", function)) }
            let (status, data) = try await options.call("GET", "/invocations", query: query)
            try GatewayOptions.check(status, data)
            let page = GatewayOptions.object(data)
            if json {
                GatewayOptions.printJSON(page)
                return
            }
            let items = page["invocations"] as? [[String: Any]] ?? []
            print(
                pad("ID", 36), pad("FUNCTION", 16), pad("STATE", 10), pad("ATTEMPTS", 8), pad("CREATED", 24),
                pad("DURATION", 10), "ERROR")
            for item in items {
                let created =
                    (item["createdAt"] as? Double).map { ISO8601Date.format(Date(timeIntervalSince1970: $0)) } ?? ""
                let duration = (item["durationMs"] as? Double).map { String(format: "%.1f ms", $0) } ?? ""
                let error = [item["errorType"] as? String, item["errorMessage"] as? String].compactMap { $0 }.joined(
                    separator: ": ")
                print(
                    pad(item["id"] as? String ?? "", 36), pad(item["function"] as? String ?? "", 16),
                    pad(item["state"] as? String ?? "", 10),
                    pad("\(item["attempts"] as? Int ?? 0)/\(item["maxAttempts"] as? Int ?? 0)", 8), pad(created, 24),
                    pad(duration, 10), error)
            }
        }

        private func pad(_ s: String, _ width: Int) -> String {
            s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one invocation with its event.")

        @Argument(help: "Invocation (request) id.")
        var id: String

        @OptionGroup var options: GatewayOptions

        func run() async throws {
            let (status, data) = try await options.call("GET", "/invocations/\(id)")
            try GatewayOptions.check(status, data)
            GatewayOptions.printJSON(GatewayOptions.object(data))
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue a dead-lettered invocation again, with a fresh budget of attempts.")

        @Argument(help: "Invocation (request) id of the dead letter.")
        var id: String

        @OptionGroup var options: GatewayOptions

        func run() async throws {
            let (status, data) = try await options.call("POST", "/invocations/\(id)/redrive")
            try GatewayOptions.check(status, data)
            print("re-driven: \(id) (\(GatewayOptions.object(data)["function"] as? String ?? "?"))")
        }
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
