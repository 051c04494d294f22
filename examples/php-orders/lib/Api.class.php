<?php
declare(strict_types=1);

/** The routes: JSON in, JSON out. */
final class Api
{
    public function __construct(private OrderStore $store)
    {
    }

    public function handle(Request $request): Response
    {
        $routes = ['/orders' => ['GET', 'POST'], '/admin/stats' => ['GET']];
        $path = $request->path();
        if (!isset($routes[$path])) {
            return new Response(404, ['error' => 'not found']);
        }
        if (!in_array($request->method(), $routes[$path], true)) {
            return new Response(405, ['error' => 'method not allowed'], ['Allow' => implode(', ', $routes[$path])]);
        }
        $client = $request->identity();
        if ($client === null) {
            return new Response(401, ['error' => 'client certificate required']);
        }
        return match ([$request->method(), $path]) {
            ['GET', '/orders'] => new Response(200, ['client' => $client->name, 'orders' => $this->store->ordersOf($client->name)]),
            ['POST', '/orders'] => $this->order($client, $request->json()),
            default => new Response(200, $this->store->stats() + ['release' => basename(dirname(__DIR__))]),
        };
    }

    private function order(Identity $client, ?array $body): Response
    {
        $item = $body['item'] ?? null;
        $quantity = $body['quantity'] ?? 1;
        if (!is_string($item) || $item === '' || strlen($item) > 200 || !is_int($quantity) || $quantity < 1) {
            return new Response(400, ['error' => 'send a JSON object: {"item": "<name>", "quantity": <1 or more>}']);
        }
        return new Response(201, ['order' => $this->store->add($client->name, $item, $quantity)]);
    }
}
