import APIKeys
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import S3Client

/// An answer the product API gives a client, and the one place its errors are written on the wire:
/// `{"error": {"code": "…", "message": "…"}}`, with a `requestId` (also `X-Request-Id`) for a failure of the
/// server's own. Routes throw it; Hummingbird's router renders it (``response(from:context:)``). Any other
/// error a route throws becomes one in ``APIErrorMiddleware`` (``init(answering:request:logger:)``).
struct APIError: HTTPResponseError, Sendable {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    /// Set for failures of the server's own (5xx): the id its log line carries.
    var requestID: String?
    /// Seconds, for 429 and 503 answers.
    var retryAfter: Int?
    /// Added to the answer (the CORS headers of the request's origin).
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func notFound(_ id: String) -> APIError { APIError(404, "NoSuchVideo", "There is no video '\(id)'.") }

    static let requestIDHeader = HTTPField.Name("X-Request-Id")!

    /// `{"error": {"code", "message", "requestId"}}`.
    private struct Body: Encodable {
        struct Inner: Encodable {
            var code: String
            var message: String
            var requestId: String?
        }
        var error: Inner
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        if status == .unauthorized { headers[.wwwAuthenticate] = #"Bearer realm="cinescale""# }
        if let requestID { headers[Self.requestIDHeader] = requestID }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        let body = try JSONEncoder().encode(Body(error: .init(code: code, message: message, requestId: requestID)))
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension APIError {
    /// What a client is told of an error a route threw. An `APIError` is the answer as it is; an error
    /// Hummingbird gives a client status for (a body over the route's limit: 413) keeps that status. Anything
    /// else is the server's own failure: logged in full under a new request id, and answered with only that id
    /// — 502 when the store failed, 503 when the key store did (both worth a retry), else 500 "internal error".
    init(answering error: any Error, request: Request, logger: Logger) {
        if let error = error as? APIError {
            self = error
            return
        }
        if let error = error as? any HTTPResponseError, error.status.code < 500 {
            let phrase = error.status.reasonPhrase
            self.init(error.status, phrase.filter { !$0.isWhitespace }, "\(phrase).")
            return
        }
        let requestID = ProductAPI.requestID()
        logger.error(
            "request failed",
            metadata: [
                "cinescale.request.id": .string(requestID), "cinescale.method": .string(request.method.rawValue),
                "cinescale.path": .string(request.uri.path), "cinescale.error": .string(String(reflecting: error)),
            ])
        if error is S3Error || error is S3ClientError {
            self.init(502, "StoreError", "The object store could not serve this request. (request id \(requestID))")
        } else if error is APIKeyError {
            self.init(
                503, "KeyStoreUnavailable", "API keys cannot be checked right now; try again. (request id \(requestID))"
            )
        } else {
            self.init(500, "InternalError", "internal error")
        }
        self.requestID = requestID
    }
}

/// Wraps the product API's routes: turns whatever a route throws into an ``APIError`` (see
/// ``APIError/init(answering:request:logger:)``) and adds the CORS headers of the request's origin to every
/// answer, errors included. A group's middleware: the router it is mounted on (the gateway's) serves other
/// APIs with their own error formats.
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let cors: CORSPolicy
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            var response = try await next(request, context)
            cors.decorate(&response.headers, for: request)
            return response
        } catch {
            var answer = APIError(answering: error, request: request, logger: logger)
            cors.decorate(&answer.headers, for: request)
            throw answer
        }
    }
}
