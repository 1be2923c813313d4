import Foundation
import SigV4
import Testing

/// AWS documentation example credentials.
let exampleAccessKey = "AKIAIOSFODNN7EXAMPLE"
let exampleSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
let exampleCredentials = Credentials(accessKeyId: exampleAccessKey, secretAccessKey: exampleSecret)

func utc(_ y: Int, _ mo: Int, _ d: Int, _ h: Int = 0, _ mi: Int = 0, _ s: Int = 0) -> Date {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    return calendar.date(from: DateComponents(year: y, month: mo, day: d, hour: h, minute: mi, second: s))!
}

/// 2013-05-24T00:00:00Z, the date of the AWS SigV4 S3 examples.
let may24 = utc(2013, 5, 24)

func exampleVerifier(region: String = "us-east-1", skew: TimeInterval = 900) -> SigV4Verifier {
    SigV4Verifier(region: region, allowedClockSkew: skew) { $0 == exampleAccessKey ? exampleSecret : nil }
}

func signature(ofAuthorization auth: String) -> String? {
    auth.range(of: "Signature=").map { String(auth[$0.upperBound...]) }
}

/// Expects `body` to throw a SigV4Error with `code`; returns the error.
@discardableResult
func expectError(
    _ code: SigV4Error.Code, _ message: String? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) -> SigV4Error? {
    do {
        try body()
        Issue.record("expected \(code.rawValue), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as SigV4Error {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        if let message { #expect(error.message == message, sourceLocation: sourceLocation) }
        return error
    } catch {
        Issue.record("expected \(code.rawValue), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Deterministic PRNG (SplitMix64) so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The bytes botocore vectors were generated from: (i * 7 + 3) % 251.
func patternData(_ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(($0 * 7 + 3) % 251) }
}

func randomBytes(_ count: Int, _ rng: inout SplitMix64) -> [UInt8] {
    (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

/// Feeds `body` through a decoder in pieces (random sizes when `rng` is given, else in one piece) and finishes.
func decodeBody(
    _ expectation: PayloadExpectation, headers: [(name: String, value: String)], body: [UInt8],
    rng: inout SplitMix64?, extraChecksums: Set<ChecksumAlgorithm> = []
) throws -> (data: [UInt8], result: PayloadResult) {
    var decoder = PayloadDecoder(expectation: expectation, headers: headers, extraChecksums: extraChecksums)
    var out = [UInt8]()
    out.reserveCapacity(body.count)
    try body.withUnsafeBytes { raw in
        var pos = 0
        while pos < raw.count {
            var n = raw.count - pos
            if var r = rng {
                let choices = [1, 2, 3, 5, 17, 64, 1000, 4096, 70000]
                n = min(n, choices.randomElement(using: &r)! + Int.random(in: 0...3, using: &r))
                rng = r
            }
            try decoder.feed(UnsafeRawBufferPointer(rebasing: raw[pos..<(pos + n)])) { out.append(contentsOf: $0) }
            pos += n
        }
    }
    let result = try decoder.finish()
    return (out, result)
}

func decodeBody(
    _ expectation: PayloadExpectation, headers: [(name: String, value: String)], body: [UInt8],
    seed: UInt64? = nil, extraChecksums: Set<ChecksumAlgorithm> = []
) throws -> (data: [UInt8], result: PayloadResult) {
    var rng: SplitMix64? = seed.map { SplitMix64(seed: $0) }
    return try decodeBody(expectation, headers: headers, body: body, rng: &rng, extraChecksums: extraChecksums)
}

extension VerifiedRequest {
    var chunkedContext: AWSChunkedContext? {
        if case .awsChunked(let c) = payload { return c }
        return nil
    }
    var sha256Hex: String? {
        if case .sha256(let h) = payload { return h }
        return nil
    }
    var isUnsigned: Bool {
        if case .unsigned = payload { return true }
        return false
    }
}
