// swift-tools-version:6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "CineScale",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cinescale", targets: ["cinescale"]),
        .executable(name: "hello", targets: ["hello"]),
        .executable(name: "probe", targets: ["probe"]),
        .executable(name: "transcode", targets: ["transcode"]),
        .library(name: "FunctionRuntime", targets: ["FunctionRuntime"]),
        .library(name: "S3Events", targets: ["S3Events"]),
        .library(name: "Gateway", targets: ["Gateway"]),
        .library(name: "EventSources", targets: ["EventSources"]),
        .library(name: "MediaKit", targets: ["MediaKit"]),
        .library(name: "HLS", targets: ["HLS"]),
        .library(name: "InvocationQueue", targets: ["InvocationQueue"]),
        .library(name: "PostgresInvocationQueue", targets: ["PostgresInvocationQueue"]),
        .library(name: "SigV4", targets: ["SigV4"]),
        .library(name: "S3Wire", targets: ["S3Wire"]),
        .library(name: "S3Client", targets: ["S3Client"]),
        .library(name: "ObjectStore", targets: ["ObjectStore"]),
        .library(name: "S3Server", targets: ["S3Server"]),
    ],
    dependencies: [
        // 4.x: jwt-kit 5 needs it.
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // The small text encodings every wire here shares, in one place: lowercase hex, constant-time comparison,
        // ISO 8601 date-times and UTC calendar arithmetic, JSON string quoting. Foundation only, no project target,
        // so the signer, the stores, the API keys and the functions' runtime can all use it.
        .target(
            name: "WireFormat",
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "WireFormatTests", dependencies: ["WireFormat"], swiftSettings: swiftSettings),
        // Signs and verifies AWS SigV4 (and verifies SigV2); clock injected. Depends on swift-crypto and WireFormat.
        .target(
            name: "SigV4",
            dependencies: ["WireFormat", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        // S3 wire formats shared by client and server: XML tree, parser and writer; HTTP and ISO 8601 dates.
        // Foundation and WireFormat only.
        .target(
            name: "S3Wire",
            dependencies: ["WireFormat"],
            swiftSettings: swiftSettings
        ),
        // S3 requests over AsyncHTTPClient: objects, multipart, ranged reads, listing, presigning, JSON objects.
        .target(
            name: "S3Client",
            dependencies: [
                "SigV4",
                "S3Wire",
                "WireFormat",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Amazon SQS over AsyncHTTPClient (AWS JSON 1.0 protocol, SigV4): receive, delete, change visibility.
        .target(
            name: "SQSClient",
            dependencies: [
                "SigV4",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SQSClientTests",
            dependencies: [
                "SQSClient",
                "FakeHTTPServer",
                "SigV4",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Buckets and objects on a local filesystem: atomic durable writes, multipart, listing. No HTTP.
        .target(
            name: "ObjectStore",
            dependencies: [
                "S3Wire",
                "WireFormat",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The embedded store's event notifications: bucket rules, durable event queue, webhook delivery.
        .target(
            name: "StoreNotifications",
            dependencies: [
                "ObjectStore",
                "S3Wire",
                "WireFormat",
                "DurableSQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "StoreNotificationsTests",
            dependencies: [
                "StoreNotifications",
                "ObjectStore",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The embedded S3-compatible HTTP server: routes, authentication, S3 XML errors, CORS.
        .target(
            name: "S3Server",
            dependencies: [
                "ObjectStore",
                "StoreNotifications",
                "SigV4",
                "S3Wire",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The `cinescale` executable: composition root, one ServiceGroup.
        .executableTarget(
            name: "cinescale",
            dependencies: [
                "ProductAPI",
                .product(name: "Crypto", package: "swift-crypto"),
                "APIKeys",
                "PostgresAPIKeys",
                "VideoContract",
                "Gateway",
                "EventSources",
                "InvocationQueue",
                "PostgresInvocationQueue",
                "PollState",
                "StoreNotifications",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                "S3Server",
                "S3Client",
                "ObjectStore",
                "SigV4",
                "WireFormat",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        // SQLite (WAL, synchronous=FULL) with group commit: many concurrent durable writes, one fsync.
        .target(
            name: "DurableSQLite",
            dependencies: [.product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // The gateway's durable queue of asynchronous invocations: states, attempts, dead letters, dedupe.
        .target(
            name: "InvocationQueue",
            dependencies: ["DurableSQLite", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // The poll sources' seen state: its contract and its SQLite file (the fleet's is in PostgresInvocationQueue).
        .target(
            name: "PollState",
            dependencies: ["DurableSQLite", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // The same queue in PostgreSQL, shared by several gateways: leases with SKIP LOCKED, takeover, NOTIFY; a
        // service whose run loop owns the pool and the outcome writes. Beside it, the poll sources' shared seen state.
        .target(
            name: "PostgresInvocationQueue",
            dependencies: [
                "InvocationQueue",
                "PollState",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // API keys and their tenants: tokens, scopes, the store contract and its SQLite implementation (a table
        // in the gateway's queue file).
        .target(
            name: "APIKeys",
            dependencies: [
                "DurableSQLite",
                "WireFormat",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // The same keys in the PostgreSQL database the gateways share their queue in.
        .target(
            name: "PostgresAPIKeys",
            dependencies: [
                "APIKeys", "InvocationQueue", "PostgresInvocationQueue",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "APIKeysTests",
            dependencies: [
                "APIKeys", "PostgresAPIKeys", "PostgresInvocationQueue", "PostgresTestSupport", "InvocationQueue",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // A scripted HTTP/1.1 server for the S3 and SQS clients' wire tests (signatures checked).
        .target(
            name: "FakeHTTPServer",
            dependencies: [
                "SigV4",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/FakeHTTPServer",
            swiftSettings: swiftSettings
        ),
        // A real PostgreSQL for tests (a throwaway cluster per test process unless one is given).
        .target(
            name: "PostgresTestSupport",
            dependencies: [
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/PostgresTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InvocationQueueTests",
            dependencies: [
                "InvocationQueue", "PostgresInvocationQueue", "PostgresTestSupport", "DurableSQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The invocation gateway: its configuration file (one YAML loader), worker supervision, Runtime API server,
        // dispatch, Invoke API, the event webhook and the `EventSink` other sources commit through. Its queue is
        // handed in by the composition root: no PostgreSQL driver, no SQS or S3 client here.
        .target(
            name: "Gateway",
            dependencies: [
                "SigV4",
                "WireFormat",
                "S3Wire",
                "InvocationQueue",
                "S3Events",
                "EventLoopExecutor",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        // Event sources beside the gateway core, built by the composition root over the gateway's `EventSink`:
        // SQS queues (Lambda's SQS event-source semantics) and polled buckets (for stores without notifications);
        // their `sources:` section of the gateway file.
        .target(
            name: "EventSources",
            dependencies: [
                "Gateway",
                "SigV4",
                "SQSClient",
                "S3Client",
                "S3Wire",
                "S3Events",
                "InvocationQueue",
                "PollState",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EventSourcesTests",
            dependencies: [
                "EventSources",
                "Gateway",
                "PollState",
                "S3Client",
                "InvocationQueue",
                "PostgresInvocationQueue",
                "PostgresTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway",
                // The live SQS source suite runs over this target's LiveGateway (real workers).
                "EventSources",
                "SQSClient",
                "InvocationQueue",
                "PostgresInvocationQueue",
                "PostgresTestSupport",
                "SigV4",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // `gateway-bench`: invocations/s and latency through the gateway next to a bare Hummingbird echo.
        .executableTarget(
            name: "gateway-bench",
            dependencies: [
                "Gateway",
                "InvocationQueue",
                "SigV4",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/gateway-bench",
            swiftSettings: swiftSettings
        ),
        // `trigger-bench`: uploads/s with and without notifications, notifications/s, upload → handler latency.
        .executableTarget(
            name: "trigger-bench",
            dependencies: [
                "S3Client",
                "SigV4",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/trigger-bench",
            swiftSettings: swiftSettings
        ),
        // FFmpeg (Debian's libav*-dev) through pkg-config, with a header-only shim for the macros Swift cannot import.
        .systemLibrary(
            name: "CFFmpeg",
            pkgConfig: "libavformat libavcodec libswscale libswresample libavutil",
            providers: [
                .apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libswresample-dev", "libavutil-dev"])
            ]
        ),
        // HLS playlists and DASH manifests as text: reading media playlists, writing master playlists and MPDs,
        // rewriting URIs. WireFormat only.
        .target(name: "HLS", dependencies: ["WireFormat"], swiftSettings: swiftSettings),
        .testTarget(name: "HLSTests", dependencies: ["HLS"], swiftSettings: swiftSettings),
        // The product API (uploads, videos, signed streaming), stateless over the buckets; mounted on the gateway.
        .target(
            name: "ProductAPI",
            dependencies: [
                "HLS", "VideoContract", "S3Client", "APIKeys", "WireFormat",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ProductAPITests",
            dependencies: [
                "ProductAPI", "VideoContract", "APIKeys", "S3Client", "SigV4", "S3Server", "ObjectStore",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        // FFmpeg wrapped once: probing over a custom AVIO (any byte source), the transcoder (the ladder, chunks, audio,
        // captions, thumbnails), joining segments into MP4s. Owns every C pointer.
        .target(
            name: "MediaKit",
            dependencies: ["CFFmpeg", "HLS"],
            swiftSettings: swiftSettings
        ),
        // The video pipeline's contract, one Swift type per schema: the media bucket's layout (`VideoKeys`,
        // `ChunkKeys`), `metadata.json`, `status.json`, the chunk plan and records, the API's `GET /videos/{id}`
        // answer. Foundation only, no project target, so the functions, the product API and the CLI all read the
        // same types.
        .target(name: "VideoContract", swiftSettings: swiftSettings),
        // What the media functions alone share: configuration from the (Lambda) environment, conditional JSON
        // objects, async work run from a blocking thread.
        .target(
            name: "MediaFunctionSupport",
            dependencies: ["S3Client", "SigV4", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // `probe`: upload → metadata.json (or status.json and a failed invocation), reading through ranged GETs.
        .executableTarget(
            name: "probe",
            dependencies: [
                "FunctionRuntime", "S3Events", "MediaKit", "MediaFunctionSupport", "VideoContract", "S3Client",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "functions/probe",
            swiftSettings: swiftSettings
        ),
        // `transcode`: metadata.json → the MP4 ladder in the media bucket, status.json with progress.
        .executableTarget(
            name: "transcode",
            dependencies: [
                "FunctionRuntime", "S3Events", "MediaKit", "MediaFunctionSupport", "VideoContract", "S3Client", "HLS",
                "WireFormat",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "functions/transcode",
            swiftSettings: swiftSettings
        ),
        // `transcode-bench`: MediaKit's side of scripts/bench-transcode (a transcode or a probe per process).
        .executableTarget(
            name: "transcode-bench",
            dependencies: [
                "MediaKit", "MediaFunctionSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/transcode-bench",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MediaKitTests",
            dependencies: ["MediaKit", "HLS"],
            swiftSettings: swiftSettings
        ),
        // Handler protocols, context, the Lambda Runtime API client loop. No project target, no event types
        // (as in lambda-runtime v2, where they live in a package of their own).
        // Swift concurrency jobs run on a NIO event loop (a TaskExecutor), for the function runtime's loop and the
        // gateway's pinned public server. NIOCore only.
        .target(
            name: "EventLoopExecutor",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FunctionRuntime",
            dependencies: [
                "WireFormat",
                "EventLoopExecutor",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // S3 event notifications as AWS S3, MinIO and Ceph RGW send them (and AWS's s3:TestEvent): the records
        // functions decode and the gateway's summaries of them. Dates through S3Wire.
        .target(
            name: "S3Events",
            dependencies: ["S3Wire"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "S3EventsTests",
            dependencies: ["S3Events"],
            swiftSettings: swiftSettings
        ),
        // `hello`: the example function (echo, sleep, crash, fail, init-fail, record).
        .executableTarget(
            name: "hello",
            dependencies: ["FunctionRuntime", .product(name: "NIOCore", package: "swift-nio")],
            path: "functions/hello",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FunctionRuntimeTests",
            dependencies: [
                "FunctionRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SigV4Tests",
            dependencies: ["SigV4"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "S3WireTests",
            dependencies: ["S3Wire"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "S3ClientTests",
            dependencies: [
                "S3Client",
                "FakeHTTPServer",
                "S3Wire",
                "SigV4",
                "WireFormat",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ObjectStoreTests",
            dependencies: ["ObjectStore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "S3ServerTests",
            dependencies: [
                "S3Server",
                "S3Client",
                "ObjectStore",
                "SigV4",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
