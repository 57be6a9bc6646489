// See shared_library.h.
#include "core/shared_library.h"

#include <dlfcn.h>

namespace ama {

std::string debian_package_of(const std::string& soname) {
  const size_t dot = soname.find(".so.");
  if (dot == std::string::npos) return soname;
  return soname.substr(0, dot) + soname.substr(dot + 4);
}

Result<void*> open_shared_library(const std::string& soname, const std::string& needed_for) {
  // RTLD_NOW: a library that lacks a symbol it needs fails here, with a
  // message, rather than at its first call in the middle of the work.
  void* handle = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle) return handle;
  const char* why = ::dlerror();
  return make_error("cannot load " + soname + " (" + (why ? why : "dlopen failed") + "); " + needed_for +
                    " needs it (Debian: apt-get install " + debian_package_of(soname) + ")");
}

Result<void*> find_function(void* library, const std::string& soname, const char* name) {
  ::dlerror();
  void* f = ::dlsym(library, name);
  if (f) return f;
  return make_error(soname + " has no function " + name + " (another version of the library?)");
}

}  // namespace ama
