<?php
declare(strict_types=1);

/** A JSON answer. */
final class Response
{
    public function __construct(
        public readonly int $status,
        public readonly array $body,
        private array $headers = []
    ) {
    }

    public function send(): void
    {
        $payload = json_encode($this->body, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE) . "\n";
        http_response_code($this->status);
        header('Content-Type: application/json');
        header('Cache-Control: no-store');
        foreach ($this->headers as $name => $value) {
            header("$name: $value");
        }
        header('Content-Length: ' . strlen($payload));
        echo $payload;
    }
}
