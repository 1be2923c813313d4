import Crypto
import Foundation
import WireFormat

/// What `PayloadDecoder.finish()` established about a body.
public struct PayloadResult: Sendable {
    /// Number of decoded payload bytes.
    public var decodedLength: Int
    /// Trailer headers received after an aws-chunked body (names lowercased; x-amz-trailer-signature excluded).
    public var trailers: [(name: String, value: String)]
    /// Checksums by header name ("x-amz-checksum-crc32" -> base64): every checksum sent in a header or trailer
    /// (verified), plus those requested through `extraChecksums`.
    public var checksums: [String: String]
    /// Hex SHA-256 of the decoded body when it was computed (`.sha256` expectation).
    public var sha256Hex: String?
    /// Hex MD5 of the decoded body when `computeMD5` was set or Content-MD5 was sent.
    public var md5Hex: String?

    public init(
        decodedLength: Int, trailers: [(name: String, value: String)] = [], checksums: [String: String] = [:],
        sha256Hex: String? = nil, md5Hex: String? = nil
    ) {
        self.decodedLength = decodedLength
        self.trailers = trailers
        self.checksums = checksums
        self.sha256Hex = sha256Hex
        self.md5Hex = md5Hex
    }
}

/// Incremental body checker/decoder.
///
/// For `.sha256` and `.unsigned` bytes pass through (hashed for `.sha256`); for `.awsChunked` the aws-chunked
/// framing is stripped, each chunk signature is verified (chained from the seed signature) for signed streaming,
/// trailers are parsed (x-amz-checksum-* and, for signed trailers, x-amz-trailer-signature), and the decoded
/// length is checked against x-amz-decoded-content-length. Any `x-amz-checksum-<alg>` request header or trailer
/// and any Content-MD5 header is verified against the decoded bytes.
///
/// Decoded bytes are handed to `emit` as they arrive, before the chunk they belong to (or the whole body) is
/// verified: treat them as provisional until `finish()` returns.
///
/// `@unchecked Sendable` for the same reason as `ChecksumHasher` (copy-on-write swift-crypto digest states).
public struct PayloadDecoder: @unchecked Sendable {
    private enum Phase: Sendable {
        case chunkHeader
        case chunkData(remaining: Int)
        case chunkDataCR
        case chunkDataLF
        case trailer
        case done
    }

    private static let maxLine = 4096
    private static let maxTrailerBytes = 64 * 1024

    // Configuration
    private let chunked: AWSChunkedContext?
    private let expectedSHA256: String?
    private let declaredLength: Int?
    private let declaredTrailers: [String]
    private var headerChecksums: [ChecksumAlgorithm: [UInt8]] = [:]
    private var expectedMD5: [UInt8]?

    // Running state
    private var sha256: SHA256?
    private var md5: Insecure.MD5?
    private var hashers: [ChecksumHasher] = []
    private var decodedCount = 0
    private var failure: SigV4Error?
    private var finished = false

    // aws-chunked state
    private var phase: Phase = .chunkHeader
    private var line: [UInt8] = []
    private var chunkHash = SHA256()
    private var chunkSignature: String?
    private var previousSignature: String
    private var trailers: [(name: String, value: String)] = []
    private var trailerText = ""
    private var trailerBytes = 0
    private var trailerSignature: String?
    private var trailerLeadingBlank = false

    /// `headers` give x-amz-decoded-content-length, x-amz-trailer, Content-MD5 and x-amz-checksum-* headers.
    /// `extraChecksums` are computed (and reported in the result) even when the client sent none.
    public init(
        expectation: PayloadExpectation, headers: [(name: String, value: String)],
        extraChecksums: Set<ChecksumAlgorithm> = [], computeMD5: Bool = false
    ) {
        let index = HeaderIndex(headers)
        switch expectation {
        case .sha256(let hex):
            expectedSHA256 = hex.asciiLowercased
            sha256 = SHA256()
            chunked = nil
        case .unsigned:
            expectedSHA256 = nil
            chunked = nil
        case .awsChunked(let context):
            expectedSHA256 = nil
            chunked = context
        }
        previousSignature = chunked?.seedSignature ?? ""

        var pending: SigV4Error?
        if chunked != nil, let raw = index.first("x-amz-decoded-content-length") {
            if let n = Int(raw), n >= 0 {
                declaredLength = n
            } else {
                declaredLength = nil
                pending = SigV4Error(.invalidArgument, "x-amz-decoded-content-length is not a valid length: \(raw)")
            }
        } else {
            declaredLength = nil
        }
        var algorithms = extraChecksums
        var declared: [String] = []
        if chunked?.mode.hasTrailer == true {
            for value in index.all("x-amz-trailer") {
                for name in value.split(separator: ",") {
                    let n = String(name).httpTrimmed.asciiLowercased
                    guard !n.isEmpty else { continue }
                    declared.append(n)
                    if let alg = ChecksumAlgorithm(headerName: n) { algorithms.insert(alg) }
                }
            }
        }
        declaredTrailers = declared
        for alg in ChecksumAlgorithm.allCases {
            guard let value = index.first(alg.headerName) else { continue }
            algorithms.insert(alg)
            if let raw = Data(base64Encoded: value), raw.count == alg.digestLength {
                headerChecksums[alg] = Array(raw)
            } else if pending == nil {
                pending = SigV4Error(.invalidRequest, "Value for \(alg.headerName) header is invalid.")
            }
        }
        if let value = index.first("content-md5") {
            if let raw = Data(base64Encoded: value), raw.count == 16 {
                expectedMD5 = Array(raw)
            } else if pending == nil {
                pending = SigV4Error(.invalidDigest, "The Content-MD5 you specified is not valid.")
            }
        }
        if computeMD5 || expectedMD5 != nil { md5 = Insecure.MD5() }
        hashers = ChecksumAlgorithm.allCases.filter { algorithms.contains($0) }.map { ChecksumHasher($0) }
        failure = pending
        line.reserveCapacity(128)
    }

    // MARK: Feeding

    /// Feed raw received bytes; `emit` receives decoded payload bytes (possibly several calls, possibly none).
    /// Input may be split anywhere.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        if let failure { throw failure }
        if finished { throw SigV4Error(.invalidRequest, "The payload was already finished") }
        do {
            if chunked != nil {
                try feedChunked(bytes, emit: emit)
            } else {
                try consume(bytes, emit: emit)
            }
        } catch let error as SigV4Error {
            failure = error
            throw error
        } catch {
            failure = SigV4Error(.incompleteBody, "Body processing was aborted: \(error)")
            throw error
        }
    }

    /// Convenience for byte arrays / Data.
    public mutating func feed(_ bytes: some Sequence<UInt8>, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        if let r = try bytes.withContiguousStorageIfAvailable({ try feed(UnsafeRawBufferPointer($0), emit: emit) }) {
            return r
        }
        try Array(bytes).withUnsafeBytes { try feed($0, emit: emit) }
    }

    /// Hashes and emits decoded payload bytes.
    @inline(__always)
    private mutating func consume(_ slice: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws
    {
        guard slice.count > 0 else { return }
        decodedCount += slice.count
        if let declaredLength, decodedCount > declaredLength {
            throw SigV4Error(
                .invalidRequest, "The decoded body is longer than x-amz-decoded-content-length (\(declaredLength))")
        }
        sha256?.update(bufferPointer: slice)
        md5?.update(bufferPointer: slice)
        for i in hashers.indices { hashers[i].update(slice) }
        if chunked?.mode.isSigned == true { chunkHash.update(bufferPointer: slice) }
        try emit(slice)
    }

    private mutating func feedChunked(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void)
        throws
    {
        var pos = 0
        let end = input.count
        while pos < end {
            switch phase {
            case .chunkData(let remaining):
                let n = min(remaining, end - pos)
                try consume(UnsafeRawBufferPointer(rebasing: input[pos..<(pos + n)]), emit: emit)
                pos += n
                if n == remaining {
                    try endOfChunkData()
                    phase = .chunkDataCR
                } else {
                    phase = .chunkData(remaining: remaining - n)
                }
            case .chunkDataCR:
                let b = input[pos]
                pos += 1
                if b == 0x0D {
                    phase = .chunkDataLF
                } else if b == 0x0A {
                    phase = .chunkHeader
                } else {
                    throw Self.malformed("chunk data is not followed by CRLF")
                }
            case .chunkDataLF:
                guard input[pos] == 0x0A else { throw Self.malformed("chunk data is not followed by CRLF") }
                pos += 1
                phase = .chunkHeader
            case .chunkHeader, .trailer:
                // Accumulate one line.
                var i = pos
                while i < end && input[i] != 0x0A { i += 1 }
                let take = i - pos
                if line.count + take > Self.maxLine {
                    throw Self.malformed(phaseIsHeader ? "chunk header line too long" : "trailer line too long")
                }
                line.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[pos..<i]))
                if i == end {
                    pos = end
                } else {
                    pos = i + 1
                    if line.last == 0x0D { line.removeLast() }
                    let complete = line
                    line.removeAll(keepingCapacity: true)
                    if phaseIsHeader {
                        try chunkHeaderLine(complete)
                    } else {
                        try trailerLine(complete)
                    }
                }
            case .done:
                throw Self.malformed("unexpected data after the end of the aws-chunked body")
            }
        }
    }

    private var phaseIsHeader: Bool {
        if case .chunkHeader = phase { return true }
        return false
    }

    private static func malformed(_ what: String) -> SigV4Error {
        SigV4Error(.invalidRequest, "Malformed aws-chunked body: \(what)")
    }

    private mutating func chunkHeaderLine(_ bytes: [UInt8]) throws(SigV4Error) {
        guard let context = chunked else { return }
        // size[;ext[=value]]...
        let semicolon = bytes.firstIndex(of: UInt8(ascii: ";")) ?? bytes.count
        var size = 0
        var digits = 0
        for b in bytes[0..<semicolon] {
            if b == 0x20 || b == 0x09 {
                if digits == 0 { continue } else { break }
            }
            guard let v = Hex.nibble(b), digits < 15 else { throw Self.malformed("invalid chunk size") }
            size = size << 4 | Int(v)
            digits += 1
        }
        guard digits > 0 else { throw Self.malformed("invalid chunk size") }
        if bytes[semicolon...].contains(where: { $0 < 0x20 && $0 != 0x09 }) {
            throw Self.malformed("invalid chunk extension")
        }
        chunkSignature = nil
        if context.mode.isSigned {
            var sig: String?
            if semicolon < bytes.count {
                let ext = String(decoding: bytes[(semicolon + 1)...], as: UTF8.self)
                for part in ext.split(separator: ";") {
                    let p = String(part).httpTrimmed
                    if p.hasPrefix("chunk-signature=") { sig = String(p.dropFirst("chunk-signature=".count)) }
                }
            }
            guard let sig else {
                throw SigV4Error(.signatureDoesNotMatch, "The chunk is missing its chunk-signature")
            }
            chunkSignature = sig.asciiLowercased
            chunkHash = SHA256()
        }
        if size == 0 {
            try endOfChunkData()
            phase = .trailer
        } else {
            phase = .chunkData(remaining: size)
        }
    }

    /// Verifies the signature of the chunk whose data just ended.
    private mutating func endOfChunkData() throws(SigV4Error) {
        guard let context = chunked, context.mode.isSigned, let provided = chunkSignature else { return }
        let sts = SigV4Core.chunkStringToSign(
            datetime: context.datetime, scope: context.scope, previous: previousSignature,
            chunkHashHex: Hex.encode(chunkHash.finalize()))
        let expected = Hex.encode(SigV4Core.hmac(context.signingKey, sts))
        guard ConstantTime.equal(expected, provided) else {
            throw SigV4Error.signatureMismatch(stringToSign: sts)
        }
        previousSignature = expected
        chunkSignature = nil
    }

    private mutating func trailerLine(_ bytes: [UInt8]) throws(SigV4Error) {
        guard let context = chunked else { return }
        if bytes.isEmpty {
            if context.mode.hasTrailer && trailers.isEmpty && trailerSignature == nil && !trailerLeadingBlank {
                // Tolerate "0;chunk-signature=...\r\n\r\n" before the trailers.
                trailerLeadingBlank = true
                if declaredTrailers.isEmpty { phase = .done }
                return
            }
            phase = .done
            return
        }
        guard context.mode.hasTrailer else {
            throw Self.malformed("trailer sent without x-amz-trailer / a trailer payload type")
        }
        trailerBytes += bytes.count + 2
        guard trailerBytes <= Self.maxTrailerBytes else { throw Self.malformed("trailer too large") }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else {
            throw Self.malformed("trailer line without ':'")
        }
        let name = String(decoding: bytes[..<colon], as: UTF8.self).httpTrimmed.asciiLowercased
        let value = String(decoding: bytes[(colon + 1)...], as: UTF8.self).httpTrimmed
        guard !name.isEmpty else { throw Self.malformed("empty trailer name") }
        if name == "x-amz-trailer-signature" {
            guard trailerSignature == nil else { throw Self.malformed("duplicate x-amz-trailer-signature") }
            trailerSignature = value.asciiLowercased
            return
        }
        if trailerSignature != nil && context.mode == .signedWithTrailer {
            throw Self.malformed("trailer after x-amz-trailer-signature")
        }
        trailers.append((name, value))
        trailerText += "\(name):\(value)\n"
    }

    // MARK: Finishing

    /// Call at end of body; throws incompleteBody / signatureDoesNotMatch / xAmzContentSHA256Mismatch /
    /// badDigest as appropriate. Returns the decoded trailer headers and the verified checksums.
    public mutating func finish() throws(SigV4Error) -> PayloadResult {
        if let failure { throw failure }
        if finished { throw SigV4Error(.invalidRequest, "The payload was already finished") }
        do {
            let result = try finishChecked()
            finished = true
            return result
        } catch {
            failure = error
            throw error
        }
    }

    private mutating func finishChecked() throws(SigV4Error) -> PayloadResult {
        var trailerValues: [ChecksumAlgorithm: [UInt8]] = [:]
        if let context = chunked {
            switch phase {
            case .done:
                break
            case .trailer where line.isEmpty:
                // Lenient: a body that ends right after a complete trailer line (no final blank line), or
                // right after the final chunk header of a payload without trailers.
                break
            default:
                throw SigV4Error.truncated
            }
            if context.mode == .signedWithTrailer {
                guard let provided = trailerSignature else {
                    throw SigV4Error(.signatureDoesNotMatch, "The trailer is missing x-amz-trailer-signature")
                }
                let sts = SigV4Core.trailerStringToSign(
                    datetime: context.datetime, scope: context.scope, previous: previousSignature,
                    trailerHashHex: SigV4Core.sha256Hex(trailerText))
                let expected = Hex.encode(SigV4Core.hmac(context.signingKey, sts))
                guard ConstantTime.equal(expected, provided) else {
                    throw SigV4Error.signatureMismatch(stringToSign: sts)
                }
            }
            for name in declaredTrailers where !trailers.contains(where: { $0.name == name }) {
                throw SigV4Error(.invalidRequest, "The trailer \(name) declared in x-amz-trailer was not sent")
            }
            for (name, value) in trailers {
                guard let alg = ChecksumAlgorithm(headerName: name) else { continue }
                guard hashers.contains(where: { $0.algorithm == alg }) else {
                    throw SigV4Error(.invalidRequest, "The trailer \(name) was not declared in x-amz-trailer")
                }
                guard let raw = Data(base64Encoded: value), raw.count == alg.digestLength else {
                    throw SigV4Error(.invalidRequest, "Value for \(name) trailing header is invalid.")
                }
                trailerValues[alg] = Array(raw)
            }
            if let declaredLength, decodedCount != declaredLength {
                throw SigV4Error(
                    .incompleteBody,
                    "You did not provide the number of bytes specified by x-amz-decoded-content-length (\(declaredLength)); got \(decodedCount)"
                )
            }
        }

        var sha256Hex: String?
        if let sha256 {
            let computed = Hex.encode(sha256.finalize())
            sha256Hex = computed
            if let expectedSHA256, computed != expectedSHA256 {
                throw SigV4Error(
                    .xAmzContentSHA256Mismatch,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.")
            }
        }
        var checksums: [String: String] = [:]
        for hasher in hashers {
            let digest = hasher.finalize()
            for expected in [headerChecksums[hasher.algorithm], trailerValues[hasher.algorithm]].compactMap({ $0 })
            where !ConstantTime.equal(expected, digest) {
                throw SigV4Error(
                    .badDigest,
                    "The \(hasher.algorithm.rawValue) you specified did not match the calculated checksum.")
            }
            checksums[hasher.algorithm.headerName] = Data(digest).base64EncodedString()
        }
        var md5Hex: String?
        if let md5 {
            let digest = Array(md5.finalize())
            md5Hex = Hex.encode(digest)
            if let expectedMD5, !ConstantTime.equal(expectedMD5, digest) {
                throw SigV4Error(.badDigest, "The Content-MD5 you specified did not match what we received.")
            }
        }
        return PayloadResult(
            decodedLength: decodedCount, trailers: trailers, checksums: checksums, sha256Hex: sha256Hex,
            md5Hex: md5Hex)
    }
}
