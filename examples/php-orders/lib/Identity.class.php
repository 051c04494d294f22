<?php
declare(strict_types=1);

/** The verified client: its name is the CN of its certificate's subject (RFC 2253 DN). */
final class Identity
{
    private function __construct(public readonly string $name, public readonly string $dn)
    {
    }

    /** From nginx's FastCGI params; null unless nginx verified the certificate. */
    public static function fromParams(array $params): ?self
    {
        if (($params['VERIFIED'] ?? '') !== 'SUCCESS') {
            return null;
        }
        $dn = (string) ($params['DN'] ?? '');
        $name = self::commonName($dn);
        return $name === null ? null : new self($name, $dn);
    }

    /** The first CN of an RFC 2253 DN ("CN=bob,O=Example\, Inc.") with its escapes undone. */
    public static function commonName(string $dn): ?string
    {
        foreach (preg_split('/(?<!\\\\),/', $dn) as $rdn) {
            if (str_starts_with($rdn, 'CN=')) {
                return preg_replace_callback(
                    '/\\\\([0-9A-Fa-f]{2}|.)/',
                    fn ($m) => strlen($m[1]) === 2 ? chr(hexdec($m[1])) : $m[1],
                    substr($rdn, 3)
                );
            }
        }
        return null;
    }
}
