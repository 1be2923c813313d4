import Foundation
import NIOCore
import NIOFoundationCompat

/// The byte-level handler every other handler shape is adapted to: one event in, one response out.
///
/// The runtime calls `handle` once per invocation, never concurrently. Throwing reports the invocation as
/// failed (see ``FunctionError`` for controlling the reported `errorType` and `errorMessage`).
public protocol ByteHandler: Sendable {
    func handle(_ event: ByteBuffer, context: FunctionContext) async throws -> ByteBuffer
}

/// A handler with typed, JSON-coded events and outputs. Use ``NoOutput`` when the function returns nothing.
public protocol FunctionHandler: Sendable {
    associatedtype Event: Decodable & Sendable
    associatedtype Output: Encodable & Sendable
    func handle(_ event: Event, context: FunctionContext) async throws -> Output
}

/// The output of a function that returns nothing: its response body is empty.
public struct NoOutput: Codable, Sendable, Equatable {
    public init() {}
}

/// Adapts a ``FunctionHandler`` to a ``ByteHandler``: decodes the event with `JSONDecoder`, encodes the
/// output with `JSONEncoder` (``NoOutput`` becomes an empty body). An event that does not decode is
/// reported with `errorType` `Runtime.UnmarshalError`; an output that does not encode with
/// `Runtime.MarshalError`.
public struct JSONByteHandler<Handler: FunctionHandler>: ByteHandler {
    public let handler: Handler

    public init(_ handler: Handler) {
        self.handler = handler
    }

    public func handle(_ event: ByteBuffer, context: FunctionContext) async throws -> ByteBuffer {
        let decoded: Handler.Event
        do {
            decoded = try JSONDecoder().decode(Handler.Event.self, from: event)
        } catch {
            throw RuntimeCodingError.unmarshal(type: Handler.Event.self, error)
        }
        let output = try await handler.handle(decoded, context: context)
        if Handler.Output.self == NoOutput.self { return ByteBuffer() }
        do {
            return try JSONEncoder().encodeAsByteBuffer(output, allocator: ByteBufferAllocator())
        } catch {
            throw RuntimeCodingError.marshal(type: Handler.Output.self, error)
        }
    }
}

/// A ``FunctionHandler`` made of a closure.
public struct ClosureFunctionHandler<Event: Decodable & Sendable, Output: Encodable & Sendable>: FunctionHandler {
    let body: @Sendable (Event, FunctionContext) async throws -> Output

    public init(_ body: @escaping @Sendable (Event, FunctionContext) async throws -> Output) {
        self.body = body
    }

    public func handle(_ event: Event, context: FunctionContext) async throws -> Output {
        try await body(event, context)
    }
}

/// A ``ByteHandler`` made of a closure.
public struct ClosureByteHandler: ByteHandler {
    let body: @Sendable (ByteBuffer, FunctionContext) async throws -> ByteBuffer

    public init(_ body: @escaping @Sendable (ByteBuffer, FunctionContext) async throws -> ByteBuffer) {
        self.body = body
    }

    public func handle(_ event: ByteBuffer, context: FunctionContext) async throws -> ByteBuffer {
        try await body(event, context)
    }
}

/// Event or output (de)serialization failures, reported the way AWS's managed runtimes name them.
struct RuntimeCodingError: FunctionError {
    let errorType: String
    let errorMessage: String

    static func unmarshal(type: Any.Type, _ error: any Error) -> RuntimeCodingError {
        RuntimeCodingError(
            errorType: "Runtime.UnmarshalError",
            errorMessage: "could not decode the event as \(type): \(describe(error))")
    }

    static func marshal(type: Any.Type, _ error: any Error) -> RuntimeCodingError {
        RuntimeCodingError(
            errorType: "Runtime.MarshalError",
            errorMessage: "could not encode the output \(type): \(describe(error))")
    }

    /// A one-line description of a coding error naming the offending path, instead of Foundation's dump.
    static func describe(_ error: any Error) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            let rendered = codingPath.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
            return rendered.isEmpty ? "the top level" : String(rendered.drop { $0 == "." })
        }
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "missing key '\(key.stringValue)' at \(path(context.codingPath))"
        case DecodingError.typeMismatch(let type, let context):
            return "expected \(type) at \(path(context.codingPath)): \(context.debugDescription)"
        case DecodingError.valueNotFound(let type, let context):
            return "expected \(type) but found null at \(path(context.codingPath))"
        case DecodingError.dataCorrupted(let context):
            let underlying = context.underlyingError.map { " (\($0))" } ?? ""
            return "invalid data at \(path(context.codingPath)): \(context.debugDescription)\(underlying)"
        case EncodingError.invalidValue(let value, let context):
            return "invalid value \(value) at \(path(context.codingPath)): \(context.debugDescription)"
        default:
            return String(describing: error)
        }
    }
}
