import sys

from keras_makemore.cli import main

sys.exit(main())
