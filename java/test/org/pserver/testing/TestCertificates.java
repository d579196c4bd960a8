package org.pserver.testing;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Date;
import java.util.concurrent.atomic.AtomicLong;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * Certificates made at test time (nothing secret is committed): a CA, and leaf certificates it
 * signs for servers (SAN localhost and 127.0.0.1) and clients, written as PEM files with
 * unencrypted PKCS#8 keys, the format the pserver reads. EC P-256 keys, valid for one day.
 */
public final class TestCertificates {
  private static final AtomicLong SERIAL = new AtomicLong(System.currentTimeMillis());

  /** A certificate and its key, in memory and as PEM files. */
  public record Issued(X509Certificate certificate, PrivateKey key, Path certFile, Path keyFile) {}

  private TestCertificates() {}

  /** A self-signed CA named {@code name}, written to {@code dir/<name>.crt} and {@code .key}. */
  public static Issued ca(Path dir, String name) throws IOException, GeneralSecurityException {
    KeyPair kp = keyPair();
    X500Name subject = new X500Name("CN=" + name);
    X509v3CertificateBuilder b = builder(subject, subject, kp);
    b.addExtension(Extension.basicConstraints, true, new BasicConstraints(true));
    b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
    return write(dir, name, sign(b, kp.getPrivate()), kp.getPrivate());
  }

  /** A server certificate for localhost and 127.0.0.1 signed by {@code ca}. */
  public static Issued server(Path dir, String name, Issued ca) throws IOException, GeneralSecurityException {
    return leaf(dir, name, ca, KeyPurposeId.id_kp_serverAuth);
  }

  /** A client certificate signed by {@code ca}. */
  public static Issued client(Path dir, String name, Issued ca) throws IOException, GeneralSecurityException {
    return leaf(dir, name, ca, KeyPurposeId.id_kp_clientAuth);
  }

  private static Issued leaf(Path dir, String name, Issued ca, KeyPurposeId purpose) throws IOException, GeneralSecurityException {
    KeyPair kp = keyPair();
    X509v3CertificateBuilder b =
        builder(X500Name.getInstance(ca.certificate().getSubjectX500Principal().getEncoded()), new X500Name("CN=" + name), kp);
    b.addExtension(Extension.basicConstraints, true, new BasicConstraints(false));
    b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature | KeyUsage.keyAgreement));
    b.addExtension(Extension.extendedKeyUsage, false, new ExtendedKeyUsage(purpose));
    b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(new GeneralName[] {
        new GeneralName(GeneralName.dNSName, "localhost"), new GeneralName(GeneralName.iPAddress, "127.0.0.1")}));
    return write(dir, name, sign(b, ca.key()), kp.getPrivate());
  }

  private static KeyPair keyPair() throws GeneralSecurityException {
    KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
    g.initialize(256);
    return g.generateKeyPair();
  }

  private static X509v3CertificateBuilder builder(X500Name issuer, X500Name subject, KeyPair kp) {
    Instant now = Instant.now();
    return new JcaX509v3CertificateBuilder(
        issuer, BigInteger.valueOf(SERIAL.incrementAndGet()), Date.from(now.minus(Duration.ofMinutes(5))),
        Date.from(now.plus(Duration.ofDays(1))), subject, kp.getPublic());
  }

  private static X509Certificate sign(X509v3CertificateBuilder b, PrivateKey issuerKey) throws GeneralSecurityException {
    try {
      return new JcaX509CertificateConverter().getCertificate(b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(issuerKey)));
    } catch (OperatorCreationException e) {
      throw new GeneralSecurityException(e);
    }
  }

  private static Issued write(Path dir, String name, X509Certificate cert, PrivateKey key) throws IOException, GeneralSecurityException {
    Files.createDirectories(dir);
    Path c = dir.resolve(name + ".crt");
    Path k = dir.resolve(name + ".key");
    Files.writeString(c, pem("CERTIFICATE", cert.getEncoded()), StandardCharsets.US_ASCII);
    Files.writeString(k, pem("PRIVATE KEY", key.getEncoded()), StandardCharsets.US_ASCII); // PKCS#8
    return new Issued(cert, key, c, k);
  }

  private static String pem(String type, byte[] der) {
    return "-----BEGIN " + type + "-----\n"
        + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der)
        + "\n-----END " + type + "-----\n";
  }
}
