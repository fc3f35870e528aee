package android.content.res;

import java.io.IOException;
import java.io.InputStream;

/** Host-compile stub of the Android class; never run. */
public class AssetManager {
    public AssetFileDescriptor openFd(String name) throws IOException {
        throw new UnsupportedOperationException("stub");
    }

    public InputStream open(String name) throws IOException {
        throw new UnsupportedOperationException("stub");
    }
}
