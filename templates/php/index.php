<?php
// mTLS API front controller (PHP-FPM). Managed by mtls-deploy (role backend_php).
//
// nginx verifies the client certificate and passes what it found as FastCGI params: VERIFIED,
// DN, ISSUER_DN, SERIAL, FINGERPRINT, NOT_AFTER. Identity comes from those params only. A request
// header such as "Verified: SUCCESS" arrives as HTTP_VERIFIED and is never read.
//
// Same routes and the same JSON, byte for byte, as templates/backend_python/app.py:
//   GET /health  -> 200 {"status":"ok"}
//   GET /whoami  -> 200 {"verified":"SUCCESS","subject":{"CN":"bob"},...}, or 401 without a
//                   verified client certificate
//   anything else -> 404 (unknown path) or 405 (other method)

declare(strict_types=1);

const IDENTITY_PARAMS = ['VERIFIED', 'DN', 'ISSUER_DN', 'SERIAL', 'FINGERPRINT', 'NOT_AFTER'];

// --- RFC 2253 distinguished names --------------------------------------------------------------

/** Split on $separator where it is not escaped with a backslash; escapes are kept. */
function dn_split(string $text, string $separator): array
{
    if (strpos($text, '\\') === false) {  // no escapes (most DNs): explode, not a PHP loop
        return explode($separator, $text);
    }
    $parts = [];
    $current = '';
    $length = strlen($text);
    for ($i = 0; $i < $length; $i++) {
        $char = $text[$i];
        if ($char === '\\' && $i + 1 < $length) {
            $current .= $char . $text[$i + 1];
            $i++;
        } elseif ($char === $separator) {
            $parts[] = $current;
            $current = '';
        } else {
            $current .= $char;
        }
    }
    $parts[] = $current;
    return $parts;
}

/** Undo RFC 2253 escapes: "\," -> "," and "\C3\A9" (UTF-8 bytes) -> "é". */
function dn_unescape(string $raw): string
{
    if (strpos($raw, '\\') === false) {
        return $raw;
    }
    $out = '';
    $length = strlen($raw);
    for ($i = 0; $i < $length; $i++) {
        $char = $raw[$i];
        if ($char === '\\' && $i + 1 < $length) {
            $pair = substr($raw, $i + 1, 2);
            if (preg_match('/^[0-9A-Fa-f]{2}$/D', $pair) === 1) {
                $out .= chr(hexdec($pair));
                $i += 2;
            } else {
                $out .= $raw[$i + 1];
                $i++;
            }
        } else {
            $out .= $char;
        }
    }
    return $out;
}

/** An RFC 2253 DN as [type => value] in DN order; a type seen twice gives a list. */
function parse_dn(string $dn): array
{
    $fields = [];
    if ($dn === '') {
        return $fields;
    }
    foreach (dn_split($dn, ',') as $rdn) {
        foreach (dn_split($rdn, '+') as $ava) {
            $equals = strpos($ava, '=');
            if ($equals === false) {
                continue;
            }
            $type = trim(substr($ava, 0, $equals));
            if ($type === '') {
                continue;
            }
            $value = dn_unescape(substr($ava, $equals + 1));
            if (!array_key_exists($type, $fields)) {
                $fields[$type] = $value;
            } elseif (is_array($fields[$type])) {
                $fields[$type][] = $value;
            } else {
                $fields[$type] = [$fields[$type], $value];
            }
        }
    }
    return $fields;
}

// --- the API -----------------------------------------------------------------------------------

/** The verified client from nginx's FastCGI params, or null. */
function client_identity(array $params): ?array
{
    if (($params['VERIFIED'] ?? null) !== 'SUCCESS') {
        return null;
    }
    return [
        'verified' => 'SUCCESS',
        'subject' => (object) parse_dn($params['DN'] ?? ''),
        'issuer' => (object) parse_dn($params['ISSUER_DN'] ?? ''),
        'serial' => $params['SERIAL'] ?? '',
        'fingerprint' => $params['FINGERPRINT'] ?? '',
        'not_after' => $params['NOT_AFTER'] ?? '',
    ];
}

/** [status, JSON body, extra headers] for one request. Pure: no I/O. */
function route(string $method, string $path, array $params): array
{
    if ($path !== '/health' && $path !== '/whoami') {
        return [404, ['error' => 'not found'], []];
    }
    if ($method !== 'GET' && $method !== 'HEAD') {
        return [405, ['error' => 'method not allowed'], ['Allow' => 'GET, HEAD']];
    }
    if ($path === '/health') {
        return [200, ['status' => 'ok'], []];
    }
    $identity = client_identity($params);
    if ($identity === null) {
        return [401, ['error' => 'client certificate required'], []];
    }
    return [200, $identity, []];
}

/** Compact JSON plus a newline, as the Python backend's to_json() writes it. */
function to_json(array $body): string
{
    return json_encode($body, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE) . "\n";
}

/** The decoded, normalised path: nginx's DOCUMENT_URI ($uri), else the path of REQUEST_URI. */
function request_path(array $server): string
{
    if (isset($server['DOCUMENT_URI']) && $server['DOCUMENT_URI'] !== '') {
        return (string) $server['DOCUMENT_URI'];
    }
    $path = parse_url((string) ($server['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
    return is_string($path) && $path !== '' ? rawurldecode($path) : '/';
}

/** Only the FastCGI params nginx sets for the client certificate; never HTTP_* headers. */
function identity_params(array $server): array
{
    $params = [];
    foreach (IDENTITY_PARAMS as $name) {
        if (isset($server[$name])) {
            $params[$name] = (string) $server[$name];
        }
    }
    return $params;
}

/** [status, body, headers] for the request described by $server (PHP's $_SERVER). */
function handle(array $server): array
{
    $method = (string) ($server['REQUEST_METHOD'] ?? 'GET');
    return route($method, request_path($server), identity_params($server));
}

if (!defined('API_NO_MAIN')) {  // tests define it to call the functions above one by one
    header_remove('X-Powered-By');
    [$status, $body, $headers] = handle($_SERVER);
    http_response_code($status);
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    header('X-Content-Type-Options: nosniff');
    foreach ($headers as $name => $value) {
        header("$name: $value");
    }
    $payload = to_json($body);
    header('Content-Length: ' . strlen($payload));
    if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'HEAD') {
        echo $payload;
    }
}
