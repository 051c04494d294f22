<?php
declare(strict_types=1);

/** Orders, one JSON object a line, in the app's shared directory (var/, kept across releases). */
final class OrderStore
{
    public function __construct(private string $file, private string $signingKey)
    {
    }

    /** @return list<array> the orders of client $name, oldest first */
    public function ordersOf(string $name): array
    {
        return array_values(array_filter($this->all(), fn ($o) => $o['client'] === $name));
    }

    /** Store a new order of client $name; its receipt is an HMAC of it with ORDERS_SIGNING_KEY. */
    public function add(string $name, string $item, int $quantity): array
    {
        $order = ['id' => bin2hex(random_bytes(8)), 'client' => $name, 'item' => $item,
                  'quantity' => $quantity, 'created' => gmdate('Y-m-d\TH:i:s\Z')];
        $order['receipt'] = hash_hmac('sha256', $order['id'], $this->signingKey);
        $line = json_encode($order, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE) . "\n";
        if (file_put_contents($this->file, $line, FILE_APPEND | LOCK_EX) === false) {
            throw new RuntimeException('cannot write the orders file');
        }
        return $order;
    }

    /** @return array{orders: int, clients: int} */
    public function stats(): array
    {
        $orders = $this->all();
        return ['orders' => count($orders), 'clients' => count(array_unique(array_column($orders, 'client')))];
    }

    /** @return list<array> */
    private function all(): array
    {
        if (!is_file($this->file)) {
            return [];
        }
        $lines = file($this->file, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [];
        return array_values(array_filter(array_map(fn ($l) => json_decode($l, true), $lines), 'is_array'));
    }
}
