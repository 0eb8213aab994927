// Package resp reads and writes RESP2, the Redis serialization protocol, so
// that redis-cli, redis-benchmark and Redis client libraries can talk to
// Trellis.
//
// The package is pure: no I/O, no goroutines. A server feeds ParseCommand
// the bytes it has buffered for a connection and gets back the arguments of
// the first request and how many bytes it took; it encodes replies with the
// Append functions onto its output buffer. Tests, tools and clients encode
// requests with AppendCommand and decode replies with ParseReply.
//
// # Requests
//
// ParseCommand follows Redis 7's processMultibulkBuffer and
// processInlineBuffer, and its *ProtocolError carries the exact text Redis
// sends after "-ERR ", so a server can reply and close the connection as
// Redis does:
//
//   - "*<n>\r\n" then n bulk arguments "$<len>\r\n<bytes>\r\n". n <= 0 is an
//     empty request, skipped. n above Limits.MaxArgs or not an integer:
//     "Protocol error: invalid multibulk length". A line not starting with
//     '$' where a bulk header belongs: "Protocol error: expected '$', got
//     'X'". A bulk length that is negative, above Limits.MaxBulk or not an
//     integer: "Protocol error: invalid bulk length". No CR within 64 KiB of
//     a header line's start: "Protocol error: too big mbulk count string" or
//     "... too big bulk count string". Integers are read as Redis's
//     string2ll reads them: no '+', no leading zeros, no blanks.
//   - Any other first byte starts an inline command: one line ending in "\n"
//     or "\r\n", split into arguments as Redis's sdssplitargs splits them
//     (blanks separate, "double quotes" with \n \r \t \b \a \xHH \" \\
//     escapes, 'single quotes' with \', a NUL byte ends the line).
//     Unbalanced quotes, or a closing quote followed by other than a blank:
//     "Protocol error: unbalanced quotes in request". A blank line is an
//     empty request. No "\n" within Limits.MaxInline bytes: "Protocol error:
//     too big inline request".
//
// Deliberate differences from Redis, each only for input no Redis client
// sends: the two bytes after a bulk argument must be CRLF ("Protocol error:
// expected CRLF after bulk argument"; Redis skips them unread) and the CR
// that ends a header line must be followed by LF (reported as an invalid
// length; Redis skips that byte too); an inline line or a header line is
// refused when its terminator lies beyond the limit even if it has already
// arrived (Redis accepts it if it arrived in the same read, so its verdict
// depends on how the stream was split); MaxArgs defaults to 1024*1024 where
// Redis 7 allows up to 2^31-1.
//
// # Bounds
//
// Nothing is allocated, and nothing is waited for, on the strength of a
// number read from the input before the bytes it announces are present:
// "*2147483647\r\n" costs O(1) memory, and memory grows only with bytes
// received. Header and inline lines are searched at most 64 KiB (or
// MaxInline) deep, so an 8 MiB line without a newline is refused after
// looking at its first 64 KiB. A caller that re-parses after every read does
// O(line) work per read while a line is incomplete, bounded by those limits;
// for bulk data, Parser.Need tells how many bytes to wait for, so a 100 MB
// value arriving in small reads is parsed once, not once per read.
//
// # Lifetimes
//
// Parsed arguments and reply strings are sub-slices of the input buffer, not
// copies: they are valid while the caller leaves those bytes alone. A gnet
// server must therefore finish with a request's arguments (or copy what it
// keeps, such as a value it stores) before it discards the bytes from the
// connection's buffer. The one exception is an inline argument that
// contained quotes, which must be unescaped: it lives in memory that the
// parser allocated (ParseCommand) or that the Parser owns (Parser
// .ParseCommand), and that memory is never written again once handed out,
// so it stays valid for as long as the caller keeps it, independently of
// buf and of later calls.
//
// # Replies
//
// The Append functions write RESP2 replies with strconv, no fmt, and
// allocate only to grow the caller's slice. ParseReply reads one reply,
// bounded like requests (MaxBulk, MaxArgs) and nested at most
// Limits.MaxDepth deep; Reply.String renders it as redis-cli does.
package resp
