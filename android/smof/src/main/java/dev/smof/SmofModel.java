package dev.smof;

import android.content.res.AssetFileDescriptor;
import android.content.res.AssetManager;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;

/**
 * An immutable, validated SMOF model ({@code .smof} file). Thread-safe: one model serves any
 * number of {@link SmofSession}s. Close it when done; sessions created from it stay usable
 * after the model is closed (they keep the native model alive).
 */
public final class SmofModel implements AutoCloseable {
    static {
        System.loadLibrary("smof_android");
    }

    private long handle;

    private SmofModel(long handle) {
        this.handle = handle;
    }

    /** Memory-maps the model file at {@code path}. Weights are used in place, without a copy. */
    public static SmofModel fromFile(String path) throws IOException {
        if (path == null) throw new IllegalArgumentException("path is null");
        return new SmofModel(nativeOpenFile(path));
    }

    /** Memory-maps the model file {@code file}. */
    public static SmofModel fromFile(File file) throws IOException {
        if (file == null) throw new IllegalArgumentException("file is null");
        return fromFile(file.getPath());
    }

    /**
     * Opens the model stored in {@code length} bytes at {@code offset} of an open file ({@code
     * length < 0}: up to the end of the file). The range is memory-mapped (copied instead when
     * {@code offset} is not a multiple of 64). The descriptor is duplicated natively, so the
     * caller may close it as soon as this returns.
     */
    public static SmofModel fromFd(FileDescriptor fd, long offset, long length) throws IOException {
        if (fd == null) throw new IllegalArgumentException("fd is null");
        if (!fd.valid()) throw new IllegalArgumentException("fd is not valid (closed?)");
        return new SmofModel(nativeFromFd(fd, offset, length));
    }

    /** As {@link #fromFd(FileDescriptor, long, long)}, for a raw descriptor such as
     *  {@code ParcelFileDescriptor.getFd()}. */
    public static SmofModel fromFd(int fd, long offset, long length) throws IOException {
        return new SmofModel(nativeFromIntFd(fd, offset, length));
    }

    /**
     * Opens a model bundled in the APK's assets. The asset must be stored uncompressed (in
     * Gradle: {@code androidResources { noCompress += "smof" }}) so it can be mapped straight
     * from the APK; a compressed asset is read into memory instead.
     */
    public static SmofModel fromAsset(AssetManager assets, String name) throws IOException {
        if (assets == null) throw new IllegalArgumentException("assets is null");
        if (name == null) throw new IllegalArgumentException("name is null");
        AssetFileDescriptor afd;
        try {
            afd = assets.openFd(name);
        } catch (FileNotFoundException compressed) {
            // openFd fails for compressed assets (and missing ones: open() then throws too).
            try (InputStream in = assets.open(name)) {
                return fromBytes(readAll(in));
            }
        }
        try {
            return fromFd(afd.getFileDescriptor(), afd.getStartOffset(), afd.getLength());
        } finally {
            afd.close();
        }
    }

    /** Copies a model from the remaining bytes of {@code buffer} (direct or heap). The buffer's
     *  position is not changed. */
    public static SmofModel fromByteBuffer(ByteBuffer buffer) throws IOException {
        if (buffer == null) throw new IllegalArgumentException("buffer is null");
        if (buffer.isDirect()) {
            return new SmofModel(
                    nativeFromDirectBuffer(buffer, buffer.position(), buffer.remaining()));
        }
        byte[] bytes = new byte[buffer.remaining()];
        buffer.duplicate().get(bytes);
        return fromBytes(bytes);
    }

    /** Copies a model from a byte array. */
    public static SmofModel fromBytes(byte[] bytes) throws IOException {
        if (bytes == null) throw new IllegalArgumentException("bytes is null");
        return new SmofModel(nativeFromBytes(bytes));
    }

    /** Number of model inputs. */
    public synchronized int getInputCount() {
        return nativeIoCount(live(), false);
    }

    /** Number of model outputs. */
    public synchronized int getOutputCount() {
        return nativeIoCount(live(), true);
    }

    /** Shape of input {@code index} in ONNX order, e.g. {@code [1, 3, 224, 224]}. */
    public synchronized int[] getInputShape(int index) {
        return nativeIoShape(live(), false, index);
    }

    /** Shape of output {@code index} in ONNX order, e.g. {@code [1, 1000]}. */
    public synchronized int[] getOutputShape(int index) {
        return nativeIoShape(live(), true, index);
    }

    /** Name of input {@code index} in the source model. */
    public synchronized String getInputName(int index) {
        return nativeIoName(live(), false, index);
    }

    /** Name of output {@code index} in the source model. */
    public synchronized String getOutputName(int index) {
        return nativeIoName(live(), true, index);
    }

    /** Releases this reference to the native model. Closing twice does nothing. */
    @Override
    public synchronized void close() {
        if (handle != 0) {
            long h = handle;
            handle = 0;
            nativeFree(h);
        }
    }

    /** Whether {@link #close()} has been called. */
    public synchronized boolean isClosed() {
        return handle == 0;
    }

    /** The live native handle; callers hold this object's lock. */
    long live() {
        if (handle == 0) throw new IllegalStateException("SmofModel is closed");
        return handle;
    }

    static int elements(int[] shape) {
        int n = 1;
        for (int d : shape) n *= d;
        return n;
    }

    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) out.write(buf, 0, n);
        return out.toByteArray();
    }

    private static native long nativeOpenFile(String path) throws IOException;

    private static native long nativeFromFd(FileDescriptor fd, long offset, long length)
            throws IOException;

    private static native long nativeFromIntFd(int fd, long offset, long length)
            throws IOException;

    private static native long nativeFromDirectBuffer(ByteBuffer buffer, int position, int length)
            throws IOException;

    private static native long nativeFromBytes(byte[] bytes) throws IOException;

    private static native void nativeFree(long handle);

    private static native int nativeIoCount(long handle, boolean output);

    private static native int[] nativeIoShape(long handle, boolean output, int index);

    private static native String nativeIoName(long handle, boolean output, int index);
}
