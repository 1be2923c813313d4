import Foundation
import HTTPTypes
import Hummingbird

/// Answers CORS preflights and decorates actual responses, as S3 does for a bucket CORS rule.
struct CORS: Sendable {
    let configuration: CORSConfiguration

    private static let allowOrigin = HTTPField.Name("Access-Control-Allow-Origin")!
    private static let allowMethods = HTTPField.Name("Access-Control-Allow-Methods")!
    private static let allowHeaders = HTTPField.Name("Access-Control-Allow-Headers")!
    private static let exposeHeaders = HTTPField.Name("Access-Control-Expose-Headers")!
    private static let maxAge = HTTPField.Name("Access-Control-Max-Age")!
    private static let requestMethod = HTTPField.Name("Access-Control-Request-Method")!
    private static let requestHeaders = HTTPField.Name("Access-Control-Request-Headers")!

    /// The answer to `OPTIONS`: 200 with the allowed method and headers; 400 (no origin or method) or 403 (no
    /// rule matches) thrown.
    func preflight(_ request: Request) throws(S3ServerError) -> Response {
        guard let origin = request.headers[.origin], let method = request.headers[Self.requestMethod] else {
            throw S3ServerError("BadRequest", .badRequest, "Insufficient information. Origin request header needed.")
        }
        let requested = (request.headers[Self.requestHeaders] ?? "")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        let headersAllowed =
            configuration.allowedHeaders.contains("*")
            || requested.allSatisfy { name in configuration.allowedHeaders.contains { $0.lowercased() == name } }
        guard configuration.allows(origin: origin),
            configuration.allowedMethods.contains(method.uppercased()),
            headersAllowed
        else {
            throw S3ServerError(
                "AccessForbidden", .forbidden,
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
            )
        }
        var headers: HTTPFields = [:]
        headers[Self.allowOrigin] = configuration.allowedOrigins.contains("*") ? "*" : origin
        headers[Self.allowMethods] = configuration.allowedMethods.joined(separator: ", ")
        if !requested.isEmpty { headers[Self.allowHeaders] = requested.joined(separator: ", ") }
        headers[Self.exposeHeaders] = configuration.exposedHeaders.joined(separator: ", ")
        headers[Self.maxAge] = String(configuration.maxAgeSeconds)
        headers[.vary] = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
        headers[.contentLength] = "0"
        return Response(status: .ok, headers: headers)
    }

    /// Adds the CORS headers to an actual response when the origin is allowed.
    func decorate(_ response: inout Response, origin: String) {
        guard configuration.allows(origin: origin) else { return }
        response.headers[Self.allowOrigin] = configuration.allowedOrigins.contains("*") ? "*" : origin
        response.headers[Self.allowMethods] = configuration.allowedMethods.joined(separator: ", ")
        response.headers[Self.exposeHeaders] = configuration.exposedHeaders.joined(separator: ", ")
        response.headers[.vary] = "Origin"
    }
}
