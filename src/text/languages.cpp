#include "text/languages.h"

#include <cctype>

namespace ama {

namespace {

// Other names openai accepts for a language (tokenizer.py TO_LANGUAGE_CODE).
struct Alias {
  std::string_view name, code;
};
constexpr Alias kAliases[] = {
    {"burmese", "my"},   {"valencian", "ca"}, {"flemish", "nl"},    {"haitian", "ht"},
    {"letzeburgesch", "lb"}, {"pushto", "ps"}, {"panjabi", "pa"},   {"moldavian", "ro"},
    {"moldovan", "ro"},  {"sinhalese", "si"}, {"castilian", "es"},  {"mandarin", "zh"},
};

std::string lower_trimmed(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string out(s.substr(b, e - b));
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

const std::vector<LanguageInfo>& languages() {
  static const std::vector<LanguageInfo> table = {
      {"en", "english"},    {"zh", "chinese"},      {"de", "german"},     {"es", "spanish"},
      {"ru", "russian"},    {"ko", "korean"},       {"fr", "french"},     {"ja", "japanese"},
      {"pt", "portuguese"}, {"tr", "turkish"},      {"pl", "polish"},     {"ca", "catalan"},
      {"nl", "dutch"},      {"ar", "arabic"},       {"sv", "swedish"},    {"it", "italian"},
      {"id", "indonesian"}, {"hi", "hindi"},        {"fi", "finnish"},    {"vi", "vietnamese"},
      {"he", "hebrew"},     {"uk", "ukrainian"},    {"el", "greek"},      {"ms", "malay"},
      {"cs", "czech"},      {"ro", "romanian"},     {"da", "danish"},     {"hu", "hungarian"},
      {"ta", "tamil"},      {"no", "norwegian"},    {"th", "thai"},       {"ur", "urdu"},
      {"hr", "croatian"},   {"bg", "bulgarian"},    {"lt", "lithuanian"}, {"la", "latin"},
      {"mi", "maori"},      {"ml", "malayalam"},    {"cy", "welsh"},      {"sk", "slovak"},
      {"te", "telugu"},     {"fa", "persian"},      {"lv", "latvian"},    {"bn", "bengali"},
      {"sr", "serbian"},    {"az", "azerbaijani"},  {"sl", "slovenian"},  {"kn", "kannada"},
      {"et", "estonian"},   {"mk", "macedonian"},   {"br", "breton"},     {"eu", "basque"},
      {"is", "icelandic"},  {"hy", "armenian"},     {"ne", "nepali"},     {"mn", "mongolian"},
      {"bs", "bosnian"},    {"kk", "kazakh"},       {"sq", "albanian"},   {"sw", "swahili"},
      {"gl", "galician"},   {"mr", "marathi"},      {"pa", "punjabi"},    {"si", "sinhala"},
      {"km", "khmer"},      {"sn", "shona"},        {"yo", "yoruba"},     {"so", "somali"},
      {"af", "afrikaans"},  {"oc", "occitan"},      {"ka", "georgian"},   {"be", "belarusian"},
      {"tg", "tajik"},      {"sd", "sindhi"},       {"gu", "gujarati"},   {"am", "amharic"},
      {"yi", "yiddish"},    {"lo", "lao"},          {"uz", "uzbek"},      {"fo", "faroese"},
      {"ht", "haitian creole"}, {"ps", "pashto"},   {"tk", "turkmen"},    {"nn", "nynorsk"},
      {"mt", "maltese"},    {"sa", "sanskrit"},     {"lb", "luxembourgish"}, {"my", "myanmar"},
      {"bo", "tibetan"},    {"tl", "tagalog"},      {"mg", "malagasy"},   {"as", "assamese"},
      {"tt", "tatar"},      {"haw", "hawaiian"},    {"ln", "lingala"},    {"ha", "hausa"},
      {"ba", "bashkir"},    {"jw", "javanese"},     {"su", "sundanese"},  {"yue", "cantonese"},
  };
  return table;
}

Result<std::string> language_code_from_user(std::string_view text) {
  const std::string key = lower_trimmed(text);
  if (key.empty() || key == "auto") return std::string("auto");
  for (const LanguageInfo& l : languages())
    if (key == l.code || key == l.name) return std::string(l.code);
  for (const Alias& a : kAliases)
    if (key == a.name) return std::string(a.code);
  std::string codes;
  for (const LanguageInfo& l : languages()) codes += (codes.empty() ? "" : " ") + std::string(l.code);
  return make_error("unknown language '" + std::string(text) +
                    "': give auto, a code or an English name (e.g. de or german); the codes are: " + codes);
}

std::string language_name(std::string_view code) {
  for (const LanguageInfo& l : languages())
    if (l.code == code) return std::string(l.name);
  return "";
}

std::string language_table_text() {
  std::string out;
  for (const LanguageInfo& l : languages()) {
    std::string code(l.code);
    code.resize(5, ' ');
    out += code + std::string(l.name) + "\n";
  }
  return out;
}

}  // namespace ama
