<?php
// php-orders: the front controller (php_front_controller: lib/Request.class.php), as in the
// tutorial: nginx sends every request here. Identity comes from the FastCGI params nginx sets
// after checking the client certificate (VERIFIED, DN, ...), never from request headers.
//
//   GET  /orders       the caller's orders (the caller: the CN of its certificate's subject)
//   POST /orders       {"item": "...", "quantity": 2} -> 201, the stored order
//   GET  /admin/stats  orders and clients counted, the release serving
//   anything else      404 (unknown path) or 405 (other method); 401 without a verified client

declare(strict_types=1);

require_once __DIR__ . '/../vendor/autoload.php';

/** One HTTP request as nginx's FastCGI params describe it. */
final class Request
{
    /** @param array<string, mixed> $server PHP's $_SERVER */
    public function __construct(private array $server, private string $body)
    {
    }

    public static function fromGlobals(): self
    {
        return new self($_SERVER, (string) file_get_contents('php://input'));
    }

    public function method(): string
    {
        return (string) ($this->server['REQUEST_METHOD'] ?? 'GET');
    }

    /** The decoded, normalised path: nginx's $uri (DOCUMENT_URI). */
    public function path(): string
    {
        $uri = (string) ($this->server['DOCUMENT_URI'] ?? '');
        return $uri !== '' ? $uri : (string) parse_url((string) ($this->server['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
    }

    public function identity(): ?Identity
    {
        return Identity::fromParams($this->server);
    }

    /** The body as a JSON object, or null. */
    public function json(): ?array
    {
        $decoded = json_decode($this->body, true);
        return is_array($decoded) && !array_is_list($decoded) ? $decoded : null;
    }
}

if (PHP_SAPI !== 'cli') {
    $store = new OrderStore(__DIR__ . '/../var/orders.jsonl', (string) getenv('ORDERS_SIGNING_KEY'));
    (new Api($store))->handle(Request::fromGlobals())->send();
}
