package android.content.res;

import java.io.Closeable;
import java.io.FileDescriptor;

/** Host-compile stub of the Android class; never run. */
public class AssetFileDescriptor implements Closeable {
    public FileDescriptor getFileDescriptor() {
        throw new UnsupportedOperationException("stub");
    }

    public long getStartOffset() {
        throw new UnsupportedOperationException("stub");
    }

    public long getLength() {
        throw new UnsupportedOperationException("stub");
    }

    @Override
    public void close() {}
}
